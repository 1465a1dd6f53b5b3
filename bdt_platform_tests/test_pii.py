import re

import pandas as pd

from bdt_platform.core import pii


def test_token_shape_and_key_dependence():
    token = pii.person_token("k1", "123-45-6789")
    assert re.fullmatch(pii.TOKEN_PATTERN, token)
    assert token == pii.person_token("k1", "123456789")  # normalized
    assert token != pii.person_token("k2", "123456789")  # keyed


def test_name_dob_zip_fallback_when_ssn_empty():
    a = pii.person_token("k", "", "José", "Núñez", "1980-01-02", "19104-1234")
    b = pii.person_token("k", None, "JOSE", "nunez", "1980-01-02", "19104")
    assert a == b
    assert a != pii.person_token("k", "", "Jose", "Nunez", "1980-01-03", "19104")


def test_tokenize_frame_drops_ssn():
    frame = pd.DataFrame({"ssn": ["123456789", ""], "first_name": ["A", "B"], "last_name": ["C", "D"],
                          "date_of_birth": ["1990-01-01", "1991-01-01"], "zip": ["19104", "08540"]})
    out = pii.tokenize_frame(frame, "k")
    assert "ssn" not in out.columns
    assert out["person_token"].str.match(pii.TOKEN_PATTERN).all()
    assert "123456789" not in out.to_csv()


def test_mask_ssn():
    assert pii.mask_ssn("ssn 123-45-6789 and 987654321") == "ssn ***-**-6789 and ***-**-4321"


def test_tokens_follow_the_documented_formula():
    """tok_ + the first 128 bits of HMAC-SHA256(key, normalized identity), as feeds.md defines:
    tokens join across loads and versions, so the formula must never drift."""
    import hashlib
    import hmac

    import pandas as pd

    def expected(identity: str) -> str:
        return "tok_" + hmac.new(b"k1", identity.encode(), hashlib.sha256).hexdigest()[:32]

    assert pii.person_token("k1", "123-45-6789") == expected("ssn:123456789")
    assert pii.person_token("k1", "", "José", "O'Brien", "1980-02-03", "08540-1234") == expected(
        "name:JOSE|OBRIEN|1980-02-03|08540")
    frame = pd.DataFrame({"ssn": ["123456789", ""], "first_name": ["A", "José"],
                          "last_name": ["B", "O'Brien"], "date_of_birth": ["", "1980-02-03"],
                          "zip": ["", "08540"]})
    assert pii.tokenize_frame(frame, "k1")["person_token"].tolist() == [
        expected("ssn:123456789"), expected("name:JOSE|OBRIEN|1980-02-03|08540")]


def test_tokenize_frame_equals_person_token_row_by_row_whatever_the_index():
    """Rows with and without an SSN, missing values, and an index with repeats (frames of many
    files are concatenated): each row's token is ``person_token`` of that row's own values."""
    import pandas as pd

    rows = [("123-45-6789", "A", "B", "1990-01-01", "19104"),
            ("", "José", "O'Brien", "1980-02-03", "08540-1234"),
            (None, "Ann", None, " 1971-05-06 ", None),
            ("987654321", "", "", "", ""),
            ("  ", "Bo", "Li", "2001-12-31", "02134")]
    frame = pd.DataFrame(rows, columns=["ssn", "first_name", "last_name", "date_of_birth", "zip"],
                         index=[7, 7, 0, 3, 0])
    tokens = pii.tokenize_frame(frame, "k2")["person_token"].tolist()
    assert tokens == [pii.person_token("k2", *row) for row in rows]
    assert len(set(tokens)) == len(rows)


def test_tokens_are_hmac_sha256_for_every_key_length():
    """``_tokens`` spells HMAC out on hashlib (faster than copying ``hmac`` objects): it must
    equal ``hmac`` for short keys, a key of exactly one block, and keys longer than a block
    (which HMAC hashes first)."""
    import hashlib
    import hmac

    identities = ["ssn:123456789", "name:JOSE|OBRIEN|1980-02-03|08540", "", "ñ" * 100]
    for key in (b"", b"k", b"k" * 63, b"k" * 64, b"k" * 65, "clé secrète".encode() * 20):
        expected = ["tok_" + hmac.new(key, i.encode(), hashlib.sha256).hexdigest()[:32]
                    for i in identities]
        assert pii._tokens(key, identities) == expected, key


def test_tokenize_frame_reads_ssn_digits_like_normalize_ssn_in_any_script():
    """The SSN column is read a whole column at a time when it is ASCII text, value by value
    otherwise: both give ``normalize_ssn``'s digits (full-width digits count, punctuation and
    spaces do not, a missing value is empty)."""
    ascii_rows = ["123-45-6789", " 987 65 4321 ", "", None, "12a3"]
    other_rows = ["１２３４５６７８９", "123-45-6789", None, "٣٤٥"]
    numbers = [123456789, 987654321]
    for ssns in (ascii_rows, other_rows, numbers):
        frame = pd.DataFrame({"ssn": ssns, "first_name": "A", "last_name": "B",
                              "date_of_birth": "1990-01-01", "zip": "19104"})
        tokens = pii.tokenize_frame(frame, "k")["person_token"].tolist()
        assert tokens == [pii.person_token("k", None if s is None else str(s), "A", "B",
                                           "1990-01-01", "19104") for s in ssns], ssns
        assert pii._ssn_digits(frame["ssn"]) == [pii.normalize_ssn(None if s is None else str(s))
                                                 for s in ssns]
