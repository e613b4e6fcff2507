"""Synthetic patients: valid 999-range NHS numbers, invented names, dates and hospital numbers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from nccid.identity.numbers import modulus11_ok

FIRST_NAMES = ["Ada", "Bryn", "Cerys", "Dafydd", "Elin", "Ffion", "Gethin", "Huw", "Iona",
               "Jago", "Kenna", "Lowri", "Macsen", "Nia", "Osian", "Pryderi", "Rhian", "Siôn"]
LAST_NAMES = ["Testperson", "Fakename", "Synthetica", "Madeup", "Placeholder", "Dummyson",
              "Notreal", "Exampleton", "Sampleford", "Mockridge"]
STREETS = ["1 Imaginary Lane", "22 Nowhere Road", "3 Fictional Close", "47 Pretend Street"]


def nhs_test_numbers(count: int, start: int = 0) -> list[str]:
    """``count`` distinct valid NHS numbers from the 999 test range, deterministic from ``start``."""
    numbers: list[str] = []
    stem = start
    while len(numbers) < count:
        if stem > 999_999:
            raise ValueError("the 999 test range holds no more numbers past this start")
        base = f"999{stem:06d}"
        stem += 1
        total = sum(int(d) * w for d, w in zip(base, range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check == 10:
            continue
        candidate = base + str(check)
        assert modulus11_ok(candidate)
        numbers.append(candidate)
    return numbers


def spaced(number: str) -> str:
    """The 3-3-4 form sites often type (``999 000 0018``)."""
    return f"{number[:3]} {number[3:6]} {number[6:]}"


@dataclass(frozen=True)
class Person:
    nhs_number: str
    hospital_number: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str  # "M" or "F"
    address: str
    phone: str

    @property
    def dicom_name(self) -> str:
        return f"{self.family_name}^{self.given_name}"

    @property
    def age_on(self) -> int:
        today = date(2020, 4, 1)
        return today.year - self.birth_date.year - ((today.month, today.day) < (self.birth_date.month, self.birth_date.day))

    def identifiers(self) -> list[str]:
        """Every identifying string of this person, as a leak scanner should search for it."""
        return [
            self.nhs_number,
            f"{self.nhs_number[:3]} {self.nhs_number[3:6]} {self.nhs_number[6:]}",
            self.hospital_number,
            self.family_name,
            self.birth_date.strftime("%Y%m%d"),
            self.address,
            self.phone,
        ]


def people(count: int, seed: int = 1, site_prefix: str = "RX") -> list[Person]:
    """``count`` reproducible synthetic people; names combine so each family name is unique.

    Seeds 0-99 draw NHS numbers from separate blocks of 10,000 (larger counts run into the
    next seed's block).
    """
    rng = random.Random(seed)
    numbers = nhs_test_numbers(count, start=(seed % 100) * 10_000)
    result = []
    for i, number in enumerate(numbers):
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 80))
        result.append(
            Person(
                nhs_number=number,
                hospital_number=f"{site_prefix}{seed:02d}{i:06d}",
                given_name=rng.choice(FIRST_NAMES),
                family_name=f"{rng.choice(LAST_NAMES)}{seed}x{i}",
                birth_date=born,
                sex=rng.choice("MF"),
                address=f"{rng.choice(STREETS)}, Testtown TT{i % 9 + 1} {i % 9}ZZ",
                phone=f"0700900{i:04d}",
            )
        )
    return result
