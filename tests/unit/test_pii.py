"""Unit tests for udfs.pii: what is masked, what technical text keeps, and the counts."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from udfs.pii import PLACEHOLDERS, luhn_valid, mask_pii


@pytest.mark.parametrize(
    "text, masked, kind",
    [
        ("Write to jane.doe+docs@mail.example.co.uk today.", "Write to <EMAIL_ADDRESS> today.", "email"),
        ("Call (212) 736-5000 or later.", "Call <PHONE_NUMBER> or later.", "phone"),
        ("Call +44 20 7946 0958 from abroad.", "Call <PHONE_NUMBER> from abroad.", "phone"),
        ("Pay with 4111 1111 1111 1111 now.", "Pay with <CARD_NUMBER> now.", "card"),
        ("Pay with 5500-0000-0000-0004 now.", "Pay with <CARD_NUMBER> now.", "card"),
        ("Ping 8.8.8.8 first.", "Ping <IP_ADDRESS> first.", "ip"),
        ("Ping 2606:4700:4700::1111 first.", "Ping <IP_ADDRESS> first.", "ip"),
    ],
)
def test_masks_and_counts(text, masked, kind):
    result = mask_pii(text)
    assert result.text == masked
    assert result.counts == {k: int(k == kind) for k in PLACEHOLDERS}


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.11.4 was released on 2023-06-06; see PEP 8 and bpo-12345678.",
        "Bind to 127.0.0.1, 192.168.1.10, 10.0.0.1 or 2001:db8::1 (documentation ranges stay).",
        "std::vector<int> and a[::2] and c::d are code, not addresses.",
        "1234 5678 9012 3456 fails the Luhn check; 555-123-4567 is a fictional number.",
        "Versions 10.0.19041.1 and timestamps 12:30:45 stay; so does x = 1234567890123.",
        "The decorator @property and user@localhost are not e-mail addresses.",
    ],
)
def test_technical_text_is_left_alone(text):
    result = mask_pii(text)
    assert result.text == text and not any(result.counts.values())


def test_several_kinds_in_one_text():
    result = mask_pii("a@b.org, server 8.8.4.4, (650) 253-0000 and 378282246310005; b@c.net")
    assert result.text == "<EMAIL_ADDRESS>, server <IP_ADDRESS>, <PHONE_NUMBER> and <CARD_NUMBER>; <EMAIL_ADDRESS>"
    assert result.counts == {"email": 2, "card": 1, "ip": 1, "phone": 1}


@pytest.mark.parametrize(
    "text",
    [
        "3.12.1.1. Recap",  # a Sphinx header: dotted section number, then the title
        "3.12.1.1 Recap of the tutorial",
        "See section 4.2.1.3 for details.",
        "Upgrade to version 1.2.3.4 before you start.",
        "The wheel for Python 3.11.4.1 and v2.10.3.7 and release 5.6.7.8 are out.",
        "Intro\n6.1.2.3. Importing * From a Package\nThe text.",
    ],
)
def test_section_numbers_and_versions_are_not_ip_addresses(text):
    result = mask_pii(text)
    assert result.text == text and result.counts["ip"] == 0


@pytest.mark.parametrize(
    "text, masked",
    [
        ("The server at 93.184.216.34 answers.", "The server at <IP_ADDRESS> answers."),
        ("Its IP address is 8.8.8.8.", "Its IP address is <IP_ADDRESS>."),
        ("Connect to 93.184.216.34:8080 with curl.", "Connect to <IP_ADDRESS>:8080 with curl."),
        ("Allow 203.0.114.0/24 through the firewall.", "Allow <IP_ADDRESS>/24 through the firewall."),
        ("Open http://93.184.216.34/index.html now.", "Open http://<IP_ADDRESS>/index.html now."),
        ("$ ping -c 3 1.1.1.1", "$ ping -c 3 <IP_ADDRESS>"),
        ("host = '93.184.216.34'", "host = '<IP_ADDRESS>'"),
        (
            '93.184.216.34 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0"',
            '<IP_ADDRESS> - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0"',
        ),
    ],
)
def test_addresses_that_read_as_addresses_are_masked(text, masked):
    result = mask_pii(text)
    assert result.text == masked and result.counts["ip"] == 1


def test_luhn():
    assert luhn_valid([int(c) for c in "79927398713"])
    assert not luhn_valid([int(c) for c in "79927398710"])


@given(st.text(max_size=300))
def test_masking_is_idempotent(text):
    once = mask_pii(text)
    twice = mask_pii(once.text)
    assert twice.text == once.text and not any(twice.counts.values())


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",), blacklist_characters="@:"), max_size=300))
def test_text_without_digits_at_signs_or_colons_is_unchanged(text):
    assert mask_pii(text).text == text
