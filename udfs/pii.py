"""Mask personal data in kept text: e-mail addresses, phone numbers, public IP addresses, card numbers.

``mask_pii`` replaces each match with a placeholder (``<EMAIL_ADDRESS>``, ``<PHONE_NUMBER>``,
``<IP_ADDRESS>``, ``<CARD_NUMBER>``) and counts what it masked. Each kind is found by a cheap, bounded
regular expression and then confirmed, so that the numbers and code in technical text are not mangled:

- card numbers: 13-19 digits (spaces or dashes allowed) with a card-network first digit and a valid
  Luhn check digit;
- IP addresses: parsed by ``ipaddress`` and masked only when globally routable; loopback, private,
  link-local and documentation addresses (``127.0.0.1``, ``192.168.0.1``, ``2001:db8::1``) are
  examples, not someone's machine (datatrove's PII formatter makes the same choice). An IPv6
  candidate needs three non-empty groups, so C++ ``a::b`` is left alone. A dotted quad is just as
  often a section number (``3.12.1.1. Recap``) or a version (``version 1.2.3.4``), so an IPv4 is
  masked only where it reads as an address (``_reads_as_ipv4_address``): a network word near it on
  its line ("IP", "server", "ping", ...), a port, a CIDR suffix, a URL, or a log/hosts-file line
  that starts with it; never right after a version or section word, nor as a line's leading number
  followed by a title;
- phone numbers: candidate digit runs confirmed by libphonenumber (``phonenumbers``) as *valid*
  numbers, international ones by their ``+`` prefix and national ones for ``region``; fictional
  ``555`` numbers, dates and version strings are not valid numbers.

Every pattern has bounded repetition, so the work is linear in the text length. This module is pure.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import phonenumbers

PLACEHOLDERS = {
    "email": "<EMAIL_ADDRESS>",
    "card": "<CARD_NUMBER>",
    "ip": "<IP_ADDRESS>",
    "phone": "<PHONE_NUMBER>",
}

_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{3,39}(?![\w:])")
# Every card, IPv4 and phone candidate contains such a run (7+ characters of digits, spaces, dots, dashes and
# brackets between two digits), so one search decides whether their three passes can match at all.
_NUMBER_RUN = re.compile(r"\d[\d ().-]{5,}\d")
# Words that make a nearby dotted quad a network address, looked for on its line within _IP_WINDOW characters.
_IP_WORDS = re.compile(
    r"\b(?:ips?|ipv4|ip-address|address(?:es)?|addr|inet|hosts?|hostname|server|servers|ping|dns|nameserver|resolver|"
    r"gateway|router|proxy|firewall|subnet|netmask|connect(?:s|ed|ing|ion)?|client|peer|remote|curl|wget|ssh|"
    r"telnet|traceroute|nslookup|dig|whois|listen(?:s|ing)?|bind)\b",
    re.IGNORECASE,
)
_IP_WINDOW = 48
# A word right before the number that makes it a version or a section ("version 1.2.3.4", "section 4.2.1.3").
_NOT_IP_BEFORE = re.compile(
    r"(?:\b(?:versions?|ver|release[sd]?|python|build|rev|revision|section|sections|chapter|sec|step|part|table|figure|"
    r"fig|pep|rfc|no)\.?|§)\s*$",
    re.IGNORECASE,
)
# After the number: a port, a CIDR suffix, a common-log-format line, or a hosts-file host name.
_IP_AFTER = re.compile(r"(?::\d{1,5}\b|/\d{1,2}\b|\s+-\s+\S+\s+\[|\s+(?:localhost\b|[\w-]+(?:\.[\w-]+)+))")
# A line's leading number followed by a title: a section number ("3.12.1.1. Recap", "6.1.2.3 Importing").
_SECTION_AFTER = re.compile(r"\.?[ \t]+[^\W\d_]")
_PHONE = re.compile(r"(?<![\w.+-])\+?\(?\d[\d ().-]{5,20}\d(?![\w-]|\.\d)")


@dataclass(frozen=True)
class Masked:
    text: str
    counts: dict[str, int]  # kind -> number masked; kinds in PLACEHOLDERS order, zeros included


def mask_pii(text: str, region: str = "US") -> Masked:
    """``text`` with e-mails, card numbers, public IPs and phone numbers replaced by placeholders."""
    counts = dict.fromkeys(PLACEHOLDERS, 0)

    def masked_if(kind: str, confirmed):
        def replace(match: re.Match) -> str:
            if not confirmed(match.group()):
                return match.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return replace

    # Cheap guards skip the passes that cannot match; cards and IPs go before phones, whose digit runs
    # would otherwise swallow them.
    if "@" in text:
        text = _EMAIL.sub(masked_if("email", lambda s: True), text)
    if _NUMBER_RUN.search(text):
        text = _CARD.sub(masked_if("card", _is_card), text)
        text = _IPV4.sub(_mask_ipv4(counts), text)
        text = _PHONE.sub(lambda m: _mask_phones(m.group(), region, counts), text)
    if "::" in text or text.count(":") >= 7:
        text = _IPV6.sub(masked_if("ip", lambda s: _ipv6_groups(s) >= 3 and _is_public_ip(s)), text)
    return Masked(text, counts)


def _mask_phones(candidate: str, region: str, counts: dict) -> str:
    """The candidate digit run, or the placeholder when libphonenumber says it is a valid number."""
    digits = sum(ch.isdigit() for ch in candidate)
    if not 7 <= digits <= 15 or candidate.count(".") >= 3:  # not a phone number's length; a dotted IP/version
        return candidate
    try:
        valid = phonenumbers.is_valid_number(phonenumbers.parse(candidate, region))
    except phonenumbers.NumberParseException:
        valid = False
    counts["phone"] += valid
    return PLACEHOLDERS["phone"] if valid else candidate


def _mask_ipv4(counts: dict):
    def replace(match: re.Match) -> str:
        if not (_is_public_ip(match.group()) and _reads_as_ipv4_address(match)):
            return match.group()
        counts["ip"] += 1
        return PLACEHOLDERS["ip"]

    return replace


def _reads_as_ipv4_address(match: re.Match) -> bool:
    """Whether the dotted quad ``match`` is written as a network address (see the module docstring)."""
    text, start, end = match.string, match.start(), match.end()
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    before = text[max(line_start, start - _IP_WINDOW) : start]
    after = text[end : min(line_end, end + _IP_WINDOW)]
    if _NOT_IP_BEFORE.search(before):
        return False
    if _IP_AFTER.match(after) or before.endswith(("://", "@")):
        return True
    if not before.strip() and _SECTION_AFTER.match(after):
        return False
    return bool(_IP_WORDS.search(before) or _IP_WORDS.search(after))


def _is_card(candidate: str) -> bool:
    digits = [int(ch) for ch in candidate if ch.isdigit()]
    # Visa 4, Mastercard 2/5, Amex/Diners/JCB 3, Discover/UnionPay 6: other first digits are not cards.
    return 13 <= len(digits) <= 19 and digits[0] in (2, 3, 4, 5, 6) and luhn_valid(digits)


def luhn_valid(digits: list[int]) -> bool:
    """The Luhn (mod 10) check that every payment card number satisfies."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ipv6_groups(candidate: str) -> int:
    return sum(1 for group in candidate.split(":") if group)


def _is_public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False
