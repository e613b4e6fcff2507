"""Write ``schema/FIELDS.md``, the human-readable reference of the clinical templates."""

from nccid.clinical.schema import SCHEMA_DIR, describe

FIELDS_MD = SCHEMA_DIR / "FIELDS.md"

if __name__ == "__main__":
    FIELDS_MD.write_text(describe(), encoding="utf-8")
    print(f"wrote {FIELDS_MD}")
