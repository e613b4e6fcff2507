"""The synthetic benchmark catalogue has the warehouse catalogue's schema and opens the same way."""

from __future__ import annotations

from nccid.synthetic.catalogue import make_catalogue
from nccid.warehouse.catalogue import connect_catalogue
from nccid.warehouse.catalogue_schema import schema_of


def test_synthetic_catalogue_opens_and_answers(tmp_path):
    counts = make_catalogue(tmp_path / "cat", images=5_000, patients=400, seed=3)
    con = connect_catalogue(directory=tmp_path / "cat")

    assert counts["images"] == 5_000 and counts["patients"] == 400
    assert con.execute("SELECT count(*), count(DISTINCT sop_uid) FROM images").fetchone() == (5_000, 5_000)
    for view in ("images", "studies", "clinical", "patients"):
        names = [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]
        assert names == schema_of(view).names, view
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] == counts[view]
    # Internally consistent: studies and patients are aggregates of images.
    assert con.execute("SELECT sum(n_images) FROM studies").fetchone() == (5_000,)
    assert con.execute("SELECT sum(n_images) FROM patients").fetchone() == (5_000,)
    assert con.execute("SELECT count(*) FROM images i JOIN patients p USING (pseudonym) "
                       "WHERE i.set_name <> p.set_name").fetchone() == (0,)
    assert con.execute("SELECT count(DISTINCT folder) FROM images WHERE modality IN ('DX','CR')"
                       ).fetchone() == (1,)
    positive = con.execute("SELECT count(*) FROM patients WHERE covid_status = 'positive'").fetchone()[0]
    assert positive == con.execute("SELECT count(DISTINCT pseudonym) FROM clinical "
                                   "WHERE kind = 'positive'").fetchone()[0]


def test_same_seed_same_catalogue(tmp_path):
    make_catalogue(tmp_path / "a", images=500, patients=50, seed=9)
    make_catalogue(tmp_path / "b", images=500, patients=50, seed=9)
    query = "SELECT sop_uid, pseudonym, storage_key, sha256 FROM images ORDER BY sop_uid"
    assert connect_catalogue(directory=tmp_path / "a").execute(query).fetchall() == \
        connect_catalogue(directory=tmp_path / "b").execute(query).fetchall()
