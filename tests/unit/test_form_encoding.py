"""pipeline.sqs.signed.form_body: SNS's query-protocol body, as botocore encodes it
(urllib's urlencode, quote_plus on every key and value), but without quote_plus's
byte-by-byte loop over a long ASCII value (an event batch's envelope)."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from pipeline.sqs.signed import FORM_SHORT, form_body

ascii_text = st.text(st.characters(max_codepoint=127), max_size=FORM_SHORT * 3)
any_text = st.text(max_size=FORM_SHORT * 2)


@given(st.lists(st.tuples(st.one_of(ascii_text, any_text), st.one_of(ascii_text, any_text)),
                max_size=6))
def test_the_body_is_urlencodes(fields: list[tuple[str, str]]) -> None:
    assert form_body(fields) == urlencode(fields).encode()


def test_a_long_value_with_every_ascii_character_is_urlencodes() -> None:
    every = "".join(map(chr, range(128))) * (FORM_SHORT // 64)
    fields = [("Message", every), ("Message2", "%" * FORM_SHORT + " +")]
    assert form_body(fields) == urlencode(fields).encode()
