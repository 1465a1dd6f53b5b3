import re

import pandas as pd

from bdt_platform import pii


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
