"""HTML and noise cleaning: markup goes, code text stays, and every span maps back to the client's text."""

from hypothesis import given
from hypothesis import strategies as st

from worker.cleaning import clean, identity


def test_markup_comments_and_entities() -> None:
    raw = (
        "<p>Use <code>df.dropna(subset=['a'])</code> &amp; done.</p><!-- nginx config example -->"
        "<script>alert(1)</script>\n\n<pre>x  =  1</pre>\x00\x07tail &#20320;&nbsp;ok"
    )
    assert clean(raw).text == "Use df.dropna(subset=['a']) & done. x = 1 tail 你 ok"


def test_plain_text_with_angle_brackets_is_kept() -> None:
    assert clean("if a < b and c > d then").text == "if a < b and c > d then"
    assert clean("  many\t\tspaces \n here ").text == "many spaces here"


def test_spans_map_back_to_the_original() -> None:
    raw = "<b>Rotate</b> the &lt;API&gt; key"
    cleaned = clean(raw)
    start = cleaned.text.index("<API>")
    a, b = cleaned.original_span(start, start + 5)
    assert raw[a:b] == "&lt;API&gt;"
    word = cleaned.text.index("Rotate")
    a, b = cleaned.original_span(word, word + 6)
    assert raw[a:b] == "Rotate"


pieces = st.sampled_from([*"ab <>/&;#x1!-\n\t中", "<p>", "&amp;", "<!--", "-->", "&#x41;", "</code>"])


@given(st.lists(pieces).map("".join))
def test_every_kept_character_comes_from_the_original(raw: str) -> None:
    cleaned = clean(raw)
    assert len(cleaned.starts) == len(cleaned.ends) == len(cleaned.text)
    assert cleaned.starts == sorted(cleaned.starts)
    assert all(0 <= a < b <= len(raw) for a, b in zip(cleaned.starts, cleaned.ends, strict=True))
    for i in range(len(cleaned.text)):
        a, b = cleaned.original_span(i, i + 1)
        assert 0 <= a < b <= len(raw)
    assert "  " not in cleaned.text and cleaned.text == cleaned.text.strip()


def test_identity() -> None:
    kept = identity("a <b> c")
    assert kept.text == "a <b> c" and kept.original_span(2, 5) == (2, 5)
