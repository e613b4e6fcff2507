"""The catalogue's studies table names a study by the modality of its images, as the summary
counts it: a presentation state or key object decides only for a study without images."""

import duckdb
import pytest

from nccid.modalities import non_image_modalities
from nccid.warehouse.catalogue_schema import studies_sql


def _studies(rows: list[tuple[str, str]]) -> dict[str, str]:
    con = duckdb.connect()
    con.execute("CREATE TABLE images (pseudonym VARCHAR, site VARCHAR, set_name VARCHAR, "
                "modality VARCHAR, study_uid VARCHAR, study_date DATE, series_uid VARCHAR, "
                "size BIGINT, received_at TIMESTAMP)")
    for n, (study, modality) in enumerate(rows):
        con.execute("INSERT INTO images VALUES ('NCCID-A', 'RTH', 'training', ?, ?, NULL, ?, 1, "
                    "TIMESTAMP '2020-04-01 00:00:00' + to_seconds(?))",
                    [modality, study, f"{study}.{n}", n])
    return dict(con.sql(f"SELECT study_uid, modality FROM ({studies_sql()})").fetchall())


@pytest.mark.parametrize("objects", [["PR", "DX"], ["DX", "PR"], ["KO", "SR", "PR", "CR", "CR"]])
def test_a_study_with_images_is_named_by_their_modality(objects):
    named = _studies([("1.2.3", m) for m in objects])["1.2.3"]
    assert named == next(m for m in objects if m not in non_image_modalities())


def test_a_study_without_images_is_named_by_its_objects():
    assert _studies([("1.2.4", "SR"), ("1.2.4", "SR"), ("1.2.4", "KO")]) == {"1.2.4": "SR"}


def test_the_most_common_image_modality_names_a_mixed_study():
    rows = [("1.2.5", "PR")] * 3 + [("1.2.5", "CT")] * 2 + [("1.2.5", "DX")]
    assert _studies(rows) == {"1.2.5": "CT"}
