"""The wheel (what the bundle and the k8s image install) carries conf/: relative conf/prompts/... and
conf/train/... paths resolve inside processes that run outside the project's folder (TorchDistributor's on the
workers, an executor's Python worker), against the installed package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile

from tests.conftest import ROOT

PROBE = textwrap.dedent(
    """
    import os, udfs
    from udfs.prompts import PromptTemplate
    from training.data import resolve
    assert not os.path.exists("conf"), "run from a folder without the project's conf/"
    assert udfs.__file__.startswith(os.environ["WHEEL_DIR"]), udfs.__file__
    print(PromptTemplate.load("conf/prompts/backtranslate_v1.txt").version)
    print(PromptTemplate.load("conf/prompts/score_v1.txt").version)
    print(resolve("conf/train/lora_gpu_forward.yaml").is_file())
    """
)


def test_prompts_and_recipes_resolve_from_the_installed_wheel_in_another_folder(tmp_path):
    wheels = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "--wheel-dir", wheels, "."],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=elsewhere,
        env={"PYTHONPATH": str(installed), "WHEEL_DIR": str(installed), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["backtranslate_v1", "score_v1", "True"]
