"""Every department's datasets, derived from one population, as Arrow tables.

Each dataset comes with a `DatasetSpec`: where and how its department's system writes it,
its key, its resident-ID and date fields, required fields and plausible numeric ranges.
Fault injection reads the spec to know which faults make sense for a dataset; the tests
read it to check the ground truth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exchange.synth.population import (
    CHILD,
    DECEASED,
    HEAD,
    MOVED_OUT,
    SPOUSE,
    YEAR,
    Population,
    add_years,
    city_name,
    day_strings,
    divisions,
    full_years,
    month_strings,
    to_days,
    year_of,
)

CITY_CODE = "440100"
OTHER_CITIES = ("440300", "440600", "441900", "110100", "310100")


@dataclass(frozen=True)
class DatasetSpec:
    """How a department's system holds one dataset, and what a valid row looks like."""

    name: str
    department: str
    path: str  # relative to the city folder
    format: str  # csv | jsonl | sqlite | parquet
    key: tuple[str, ...]
    id_fields: tuple[str, ...] = ()
    date_fields: dict[str, str] = field(default_factory=dict)  # field -> "date" | "month"
    required: tuple[str, ...] = ()
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    text_field: str | None = None  # a free-text field where a stray quote can land
    encoding: str = "utf-8"  # csv/jsonl: "gb18030", "utf-8" or "utf-8-sig"
    eol: str = "\n"
    table: str | None = None  # sqlite table name

    @property
    def is_text(self) -> bool:
        return self.format in ("csv", "jsonl")


# The public-security register is a legacy system: GB18030 text, Windows line ends.
GB18030, CRLF = "gb18030", "\r\n"
_CIVIL = "civil_affairs/civil_affairs.sqlite"

SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "household_register",
        "public_security",
        "public_security/household_register.csv",
        "csv",
        key=("id_number",),
        id_fields=("id_number",),
        date_fields={"birth_date": "date"},
        required=(
            "id_number",
            "name",
            "sex",
            "ethnicity",
            "birth_date",
            "household_no",
            "relation",
            "division_code",
            "address",
            "status",
        ),
        text_field="name",
        encoding=GB18030,
        eol=CRLF,
    ),
    DatasetSpec(
        "id_changes",
        "public_security",
        "public_security/id_changes.csv",
        "csv",
        key=("old_id",),
        id_fields=("old_id", "new_id"),
        date_fields={"change_date": "date"},
        required=("old_id", "new_id", "change_date", "reason"),
        text_field="reason",
        encoding=GB18030,
        eol=CRLF,
    ),
    DatasetSpec(
        "criminal_records",
        "public_security",
        "public_security/criminal_records.csv",
        "csv",
        key=("case_no",),
        id_fields=("person_id",),
        date_fields={"judgment_date": "date"},
        required=(
            "case_no",
            "person_id",
            "name",
            "offence",
            "judgment_date",
            "court",
            "sentence_months",
        ),
        ranges={"sentence_months": (1, 300)},
        text_field="name",
        encoding=GB18030,
        eol=CRLF,
    ),
    DatasetSpec(
        "births",
        "health",
        "health/births.jsonl",
        "jsonl",
        key=("cert_no",),
        id_fields=("child_id", "mother_id", "father_id"),
        date_fields={"birth_date": "date"},
        required=(
            "cert_no",
            "child_id",
            "child_name",
            "child_sex",
            "birth_date",
            "birth_weight_g",
            "hospital",
            "mother_id",
            "mother_name",
        ),
        ranges={"birth_weight_g": (500, 6500)},
    ),
    DatasetSpec(
        "deaths",
        "health",
        "health/deaths.jsonl",
        "jsonl",
        key=("record_no",),
        id_fields=("person_id",),
        date_fields={"death_date": "date"},
        required=(
            "record_no",
            "person_id",
            "name",
            "sex",
            "death_date",
            "age",
            "place",
            "cause_code",
        ),
        ranges={"age": (0, 120)},
    ),
    DatasetSpec(
        "marriages",
        "civil_affairs",
        _CIVIL,
        "sqlite",
        table="marriages",
        key=("registration_no",),
        id_fields=("husband_id", "wife_id"),
        date_fields={"registered_on": "date"},
        required=(
            "registration_no",
            "husband_id",
            "husband_name",
            "wife_id",
            "wife_name",
            "registered_on",
            "office",
        ),
    ),
    DatasetSpec(
        "divorces",
        "civil_affairs",
        _CIVIL,
        "sqlite",
        table="divorces",
        key=("registration_no",),
        id_fields=("husband_id", "wife_id"),
        date_fields={"divorced_on": "date"},
        required=(
            "registration_no",
            "marriage_registration_no",
            "husband_id",
            "wife_id",
            "divorced_on",
            "office",
            "kind",
        ),
    ),
    DatasetSpec(
        "dibao",
        "civil_affairs",
        _CIVIL,
        "sqlite",
        table="dibao",
        key=("case_no",),
        id_fields=("person_id",),
        date_fields={"start_month": "month", "end_month": "month"},
        required=(
            "case_no",
            "person_id",
            "household_no",
            "division_code",
            "start_month",
            "members",
            "monthly_amount",
        ),
        ranges={"members": (1, 12), "monthly_amount": (100, 20000)},
    ),
    DatasetSpec(
        "cremations",
        "civil_affairs",
        _CIVIL,
        "sqlite",
        table="cremations",
        key=("record_no",),
        id_fields=("person_id",),
        date_fields={"death_date": "date", "cremated_on": "date"},
        required=("record_no", "person_id", "name", "death_date", "cremated_on", "funeral_home"),
    ),
    DatasetSpec(
        "contributions",
        "hrss",
        "hrss/contributions.parquet",
        "parquet",
        key=("person_id", "city_code", "month"),
        id_fields=("person_id",),
        date_fields={"month": "month"},
        required=("person_id", "city_code", "month", "base_yuan", "personal_yuan"),
        ranges={"base_yuan": (1000, 60000), "personal_yuan": (0, 5000)},
    ),
    DatasetSpec(
        "pensions",
        "hrss",
        "hrss/pensions.parquet",
        "parquet",
        key=("person_id", "city_code", "month"),
        id_fields=("person_id",),
        date_fields={"month": "month"},
        required=("person_id", "city_code", "month", "amount_yuan"),
        ranges={"amount_yuan": (500, 30000)},
    ),
    DatasetSpec(
        "property",
        "housing",
        "housing/property.csv",
        "csv",
        key=("certificate_no", "owner_id"),
        id_fields=("owner_id",),
        date_fields={"registered_on": "date"},
        required=(
            "certificate_no",
            "owner_id",
            "owner_name",
            "city_code",
            "division_code",
            "address",
            "area_m2",
            "share",
            "registered_on",
        ),
        ranges={"area_m2": (5, 2000)},
        text_field="owner_name",
        encoding="utf-8-sig",
    ),
    DatasetSpec(
        "degrees",
        "education",
        "education/degrees.jsonl",
        "jsonl",
        key=("certificate_no",),
        id_fields=("holder_id",),
        required=(
            "certificate_no",
            "holder_id",
            "holder_name",
            "level",
            "institution",
            "graduation_year",
        ),
        ranges={"graduation_year": (1950, 2100)},
    ),
)

HOSPITALS = (
    "广东省妇幼保健院",
    "广州市妇女儿童医疗中心",
    "中山大学附属第一医院",
    "南方医科大学南方医院",
    "广东省人民医院",
    "广州市第一人民医院",
    "暨南大学附属第一医院",
    "广州医科大学附属第三医院",
)
FUNERAL_HOMES = (
    "广州市殡葬服务中心",
    "番禺区殡仪馆",
    "花都区殡仪馆",
    "增城区殡仪馆",
    "从化区殡仪馆",
)
CAUSES = ("I21", "I63", "C34", "J44", "C22", "E11", "V89", "J18", "I50", "C16")
OFFENCES = (
    "盗窃罪",
    "诈骗罪",
    "故意伤害罪",
    "危险驾驶罪",
    "交通肇事罪",
    "寻衅滋事罪",
    "贩卖毒品罪",
    "职务侵占罪",
)
INSTITUTIONS = (
    ("10558", "中山大学"),
    ("10561", "华南理工大学"),
    ("10559", "暨南大学"),
    ("10574", "华南师范大学"),
    ("11845", "广东工业大学"),
    ("11078", "广州大学"),
    ("10001", "北京大学"),
    ("10003", "清华大学"),
    ("10246", "复旦大学"),
    ("10486", "武汉大学"),
)
LEVELS = ("associate", "bachelor", "master", "doctorate")


def _pick(rng: np.random.Generator, options: tuple[str, ...], n: int) -> pa.Array:
    return pc.take(pa.array(options), pa.array(rng.integers(0, len(options), n)))


def _take(values: pa.Array, index: np.ndarray) -> pa.Array:
    return pc.take(values, pa.array(index))


def _numbered(prefix: str, start: int, n: int, width: int) -> pa.Array:
    digits = pa.array(np.arange(start, start + n)).cast(pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width, "0"), "")


def _sex(male: np.ndarray, chinese: bool) -> pa.Array:
    return pa.array(np.where(male, "男" if chinese else "M", "女" if chinese else "F"))


def _district_codes(pop: Population, person: np.ndarray) -> np.ndarray:
    codes = np.array([d.code for d in divisions()])
    result: np.ndarray = codes[pop.hh_division[pop.household[person]]]
    return result


def household_register(pop: Population, rng: np.random.Generator) -> pa.Table:
    n = pop.size
    relation_names = np.select(
        [pop.relation == HEAD, pop.relation == SPOUSE, pop.relation == CHILD],
        [np.array("户主"), np.array("配偶"), np.where(pop.male, "子", "女")],
        np.where(pop.male, "父亲", "母亲"),
    )
    # Legacy data entry: some addresses carry an ASCII comma or even a line break, so the
    # export has quoted fields and quoted newlines that a CSV reader must handle.
    address = pop.hh_address
    quirk = rng.random(pop.households)
    address = pc.if_else(
        pa.array(quirk < 0.004),
        pc.replace_substring(address, "号", "号,", max_replacements=1),
        address,
    )
    address = pc.if_else(
        pa.array(quirk > 0.9995),
        pc.replace_substring(address, "号", "号\n", max_replacements=1),
        address,
    )
    status = np.select([pop.status == DECEASED, pop.status == MOVED_OUT], ["死亡", "迁出"], "正常")
    return pa.table(
        {
            "id_number": pop.ids,
            "name": pop.name,
            "sex": _sex(pop.male, chinese=True),
            "ethnicity": pop.ethnicity,
            "birth_date": day_strings(pop.birth),
            "household_no": _take(pop.hh_number, pop.household),
            "relation": pa.array(relation_names),
            "division_code": pa.array(_district_codes(pop, np.arange(n))),
            "address": _take(address, pop.household),
            "status": pa.array(status),
        }
    )


def id_changes(pop: Population) -> pa.Table:
    return pa.table(
        {
            "old_id": pop.old_ids,
            "new_id": _take(pop.ids, pop.changed),
            "change_date": day_strings(pop.change_date),
            "reason": pop.change_reason,
        }
    )


def criminal_records(pop: Population, rng: np.random.Generator) -> pa.Table:
    adult_span_end = np.minimum(pop.death, pop.today)
    # Judgments are held electronically from 1980 on.
    start = np.maximum(add_years(pop.birth, 18), to_days(dt.date(1980, 1, 1)))
    p = np.where(pop.male, 0.02, 0.004)
    offender = np.flatnonzero((start < adult_span_end - 30) & (rng.random(pop.size) < p))
    again = offender[rng.random(len(offender)) < 0.08]
    person = np.sort(np.concatenate([offender, again]))
    lo, hi = start[person], adult_span_end[person] - 1
    day = lo + (rng.random(len(person)) * (hi - lo)).astype(np.int64)
    order = np.argsort(day, kind="stable")
    person, day = person[order], day[order]
    year = year_of(day)
    district = pa.array([c[2:] for c in _district_codes(pop, person)], pa.string())
    case_no = pc.binary_join_element_wise(
        "(",
        pa.array(year).cast(pa.string()),
        ")粤",
        district,
        "刑初",
        pa.array(np.arange(1, len(person) + 1) % 9000 + 100).cast(pa.string()),
        "号",
        "",
    )
    names = {d.code: d.name for d in divisions()}
    courts = [f"{city_name()}{names[c]}人民法院" for c in _district_codes(pop, person)]
    return pa.table(
        {
            "case_no": case_no,
            "person_id": pop.id_at(person, day),
            "name": _take(pop.name, person),
            "offence": _pick(rng, OFFENCES, len(person)),
            "judgment_date": day_strings(day),
            "court": pa.array(courts, pa.string()),
            "sentence_months": pa.array(rng.integers(1, 121, len(person))),
        }
    )


def births(pop: Population, rng: np.random.Generator) -> pa.Table:
    # Birth medical certificates exist from 1996; the mother is in the city, the father
    # too unless the certificate names none.
    child = np.flatnonzero((pop.mother >= 0) & (pop.birth >= to_days(dt.date(1996, 1, 1))))
    day = pop.birth[child]
    mother, father = pop.mother[child], pop.father[child]
    has_father = father >= 0
    safe_father = np.where(has_father, father, 0)
    letter = pa.array(np.array(list("KLMNOPQRST"))[np.clip((year_of(day) - 1996) // 3, 0, 9)])
    cert = pc.binary_join_element_wise(letter, _numbered("", 440_000_001, len(child), 9), "")
    no_father = pa.array(~has_father)
    return pa.table(
        {
            "cert_no": cert,
            "child_id": pop.id_at(child, day),
            "child_name": _take(pop.name, child),
            "child_sex": _sex(pop.male[child], chinese=False),
            "birth_date": day_strings(day),
            "birth_weight_g": pa.array(
                np.clip(rng.normal(3300, 450, len(child)), 1200, 5200).astype(np.int64)
            ),
            "hospital": _pick(rng, HOSPITALS, len(child)),
            "mother_id": pop.id_at(mother, day),
            "mother_name": _take(pop.name, mother),
            "father_id": pc.if_else(
                no_father, pa.scalar(None, pa.string()), pop.id_at(safe_father, day)
            ),
            "father_name": pc.if_else(
                no_father, pa.scalar(None, pa.string()), _take(pop.name, safe_father)
            ),
        }
    )


def _death_sources(pop: Population, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Who has a hospital death record and who a cremation record: every death has one."""
    dead = np.flatnonzero(pop.dead)
    u = rng.random(len(dead))
    return dead[u < 0.75], dead[u >= 0.55]


def deaths(pop: Population, rng: np.random.Generator, hospital: np.ndarray) -> pa.Table:
    day = pop.death[hospital]
    return pa.table(
        {
            "record_no": _numbered("SW", 1, len(hospital), 9),
            "person_id": pop.id_at(hospital, day),
            "name": _take(pop.name, hospital),
            "sex": _sex(pop.male[hospital], chinese=False),
            "death_date": day_strings(day),
            "age": pa.array(full_years(pop.birth[hospital], day)),
            "place": _pick(rng, HOSPITALS, len(hospital)),
            "cause_code": _pick(rng, CAUSES, len(hospital)),
        }
    )


def cremations(pop: Population, rng: np.random.Generator, cremated: np.ndarray) -> pa.Table:
    day = pop.death[cremated]
    on = np.minimum(day + rng.integers(1, 7, len(cremated)), pop.today)
    return pa.table(
        {
            "record_no": _numbered("HH", 1, len(cremated), 9),
            "person_id": pop.id_at(cremated, day),
            "name": _take(pop.name, cremated),
            "death_date": day_strings(day),
            "cremated_on": day_strings(on),
            "funeral_home": _pick(rng, FUNERAL_HOMES, len(cremated)),
        }
    )


def _offices(pop: Population, person: np.ndarray) -> pa.Array:
    names = {d.code: d.name for d in divisions()}
    return pa.array(
        [f"{city_name()}{names[c]}民政局" for c in _district_codes(pop, person)], pa.string()
    )


def marriages_and_divorces(pop: Population, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    current_wife = np.flatnonzero((pop.spouse >= 0) & ~pop.male)
    prior_wife = np.flatnonzero((pop.prior_partner >= 0) & ~pop.male)
    wife = np.concatenate([current_wife, prior_wife])
    husband = np.concatenate([pop.spouse[current_wife], pop.prior_partner[prior_wife]])
    day = np.concatenate([pop.marriage_date[current_wife], pop.prior_married[prior_wife]])
    # Registrations are held electronically from the 1950 Marriage Law on.
    kept = day >= to_days(dt.date(1950, 5, 1))
    wife, husband, day = wife[kept], husband[kept], day[kept]
    order = np.argsort(day, kind="stable")
    wife, husband, day = wife[order], husband[order], day[order]
    district = _district_codes(pop, wife)

    def registration(prefix: str, codes: np.ndarray, days: np.ndarray, start: int) -> pa.Array:
        return pc.binary_join_element_wise(
            prefix,
            pa.array(codes),
            "-",
            pa.array(year_of(days)).cast(pa.string()),
            "-",
            _numbered("", start, len(days), 6),
            "",
        )

    reg = registration("J", district, day, 1)
    marriages = pa.table(
        {
            "registration_no": reg,
            "husband_id": pop.id_at(husband, day),
            "husband_name": _take(pop.name, husband),
            "wife_id": pop.id_at(wife, day),
            "wife_name": _take(pop.name, wife),
            "registered_on": day_strings(day),
            "office": _offices(pop, wife),
        }
    )
    was_divorced = np.flatnonzero(np.isin(wife, prior_wife) & (pop.prior_married[wife] == day))
    d_wife, d_husband = wife[was_divorced], husband[was_divorced]
    d_day = pop.prior_divorced[d_wife]
    d_order = np.argsort(d_day, kind="stable")
    was_divorced, d_wife, d_husband, d_day = (
        was_divorced[d_order],
        d_wife[d_order],
        d_husband[d_order],
        d_day[d_order],
    )
    divorces = pa.table(
        {
            "registration_no": registration("L", _district_codes(pop, d_wife), d_day, 1),
            "marriage_registration_no": _take(reg, was_divorced),
            "husband_id": pop.id_at(d_husband, d_day),
            "wife_id": pop.id_at(d_wife, d_day),
            "divorced_on": day_strings(d_day),
            "office": _offices(pop, d_wife),
            "kind": pa.array(np.where(rng.random(len(d_wife)) < 0.85, "协议离婚", "判决离婚")),
        }
    )
    return marriages, divorces


def _month_index(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _month_days(months: np.ndarray) -> np.ndarray:
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def dibao(pop: Population, rng: np.random.Generator) -> pa.Table:
    heads = np.flatnonzero(pop.relation == HEAD)
    heads = heads[rng.random(len(heads)) < 0.025]
    first = _month_index(np.array([to_days(dt.date(2014, 1, 1))]))[0]
    now = _month_index(np.array([pop.today]))[0]
    last_alive = np.where(
        pop.dead[heads], _month_index(np.minimum(pop.death[heads], pop.today)), now
    )
    start = first + (rng.random(len(heads)) * (now - first)).astype(np.int64)
    keep = start <= last_alive
    heads, start, last_alive = heads[keep], start[keep], last_alive[keep]
    ended_early = rng.random(len(heads)) < 0.35
    early_end = (
        start
        + 6
        + (rng.random(len(heads)) * np.maximum(last_alive - start - 6, 0)).astype(np.int64)
    )
    end = np.where(
        pop.dead[heads], last_alive, np.where(ended_early, np.minimum(early_end, now), -1)
    )
    members = np.bincount(pop.household, minlength=pop.households)[pop.household[heads]]
    end_month = month_strings(_month_days(np.maximum(end, 0)))
    return pa.table(
        {
            "case_no": _numbered("DB", 1, len(heads), 8),
            "person_id": pop.id_at(heads, _month_days(start)),
            "household_no": _take(pop.hh_number, pop.household[heads]),
            "division_code": pa.array(_district_codes(pop, heads)),
            "start_month": month_strings(_month_days(start)),
            "end_month": pc.if_else(pa.array(end < 0), pa.scalar(None, pa.string()), end_month),
            "members": pa.array(np.minimum(members, 12)),
            "monthly_amount": pa.array(
                np.minimum(members, 12) * rng.integers(400, 1100, len(heads))
            ),
        }
    )


def _monthly_rows(
    person: np.ndarray, first: np.ndarray, last: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand (person, first month, last month) spans into one row per person-month."""
    count = np.maximum(last - first + 1, 0)
    row_person = np.repeat(np.arange(len(person)), count)
    starts = np.repeat(np.cumsum(count) - count, count)
    month = np.repeat(first, count) + (np.arange(count.sum()) - starts)
    return row_person, month, count


def contributions(pop: Population, rng: np.random.Generator, months: int) -> pa.Table:
    now = _month_index(np.array([pop.today]))[0]
    window = now - months + 1
    retire_age = np.where(pop.male, 60, 55)
    adult_from = _month_index(add_years(pop.birth, 18))
    retire_at = _month_index(add_years(pop.birth, retire_age))
    alive_until = np.where(pop.dead, _month_index(np.minimum(pop.death, pop.today)), now)
    first = np.maximum(adult_from, window)
    last = np.minimum(np.minimum(retire_at, alive_until), now)
    worker = np.flatnonzero((first <= last) & (rng.random(pop.size) < 0.72))
    first, last = first[worker], last[worker]
    span = last - first + 1
    late_start = rng.random(len(worker)) < 0.3
    first = first + np.where(late_start, (rng.random(len(worker)) * span * 0.7).astype(np.int64), 0)
    early_end = rng.random(len(worker)) < 0.15
    last = last - np.where(
        early_end, (rng.random(len(worker)) * (last - first) * 0.5).astype(np.int64), 0
    )
    elsewhere = rng.random(len(worker)) < 0.1
    moved_in = rng.random(len(worker)) < 0.06  # worked elsewhere first, then in the city
    other = rng.integers(0, len(OTHER_CITIES), len(worker))
    split = first + (rng.random(len(worker)) * (last - first + 1)).astype(np.int64)
    base = np.clip(rng.lognormal(8.9, 0.5, len(worker)), 2300, 34000).astype(np.int64)

    row, month, _ = _monthly_rows(worker, first, last)
    local = ~elsewhere[row] & ~(moved_in[row] & (month < split[row]))
    city = np.where(local, CITY_CODE, np.array(OTHER_CITIES)[other[row]])
    person = worker[row]
    return pa.table(
        {
            "person_id": pop.id_at(person, _month_days(month)),
            "city_code": pa.array(city),
            "month": month_strings(_month_days(month)),
            "base_yuan": pa.array(base[row], pa.int32()),
            "personal_yuan": pa.array((base[row] * 8) // 100, pa.int32()),
        }
    )


def pensions(pop: Population, rng: np.random.Generator, months: int = 12) -> pa.Table:
    now = _month_index(np.array([pop.today]))[0]
    window = now - months + 1
    retire_age = np.where(pop.male, 60, 55)
    retire_at = _month_index(add_years(pop.birth, retire_age)) + 1  # paid from the next month
    alive_until = np.where(pop.dead, _month_index(np.minimum(pop.death, pop.today)), now)
    first = np.maximum(retire_at, window)
    retiree = np.flatnonzero((first <= alive_until) & (rng.random(pop.size) < 0.88))
    first, last = first[retiree], alive_until[retiree]
    city = np.where(
        rng.random(len(retiree)) < 0.93,
        CITY_CODE,
        np.array(OTHER_CITIES)[rng.integers(0, len(OTHER_CITIES), len(retiree))],
    )
    amount = rng.integers(1800, 9000, len(retiree))
    # A few draw a second pension in another city: the case the no-pension-elsewhere fact finds.
    double = np.flatnonzero(rng.random(len(retiree)) < 0.004)
    second_city = np.array(OTHER_CITIES)[rng.integers(0, len(OTHER_CITIES), len(double))]
    second_city = np.where(second_city == city[double], "110100", second_city)
    second_city = np.where(second_city == city[double], "310100", second_city)
    person = np.concatenate([retiree, retiree[double]])
    cities = np.concatenate([city, second_city])
    amounts = np.concatenate([amount, amount[double]])
    row, month, _ = _monthly_rows(
        person, np.concatenate([first, first[double]]), np.concatenate([last, last[double]])
    )
    order = np.lexsort((month, person[row]))
    row, month = row[order], month[order]
    return pa.table(
        {
            "person_id": pop.id_at(person[row], _month_days(month)),
            "city_code": pa.array(cities[row]),
            "month": month_strings(_month_days(month)),
            "amount_yuan": pa.array(amounts[row], pa.int32()),
        }
    )


def property_titles(pop: Population, rng: np.random.Generator) -> pa.Table:
    heads = np.flatnonzero((pop.relation == HEAD) & (pop.age_at(pop.today) >= 24))
    owners = heads[rng.random(len(heads)) < 0.55]
    second = owners[rng.random(len(owners)) < 0.15]
    title_owner = np.concatenate([owners, second])
    is_home = np.r_[np.ones(len(owners), bool), np.zeros(len(second), bool)]
    m = len(title_owner)
    lo = np.maximum(pop.birth[title_owner] + int(23 * YEAR), to_days(dt.date(1998, 1, 1)))
    hi = np.minimum(pop.death[title_owner], pop.today) - 1
    keep = lo < hi
    title_owner, is_home, lo, hi = title_owner[keep], is_home[keep], lo[keep], hi[keep]
    m = len(title_owner)
    day = lo + (rng.random(m) * (hi - lo)).astype(np.int64)
    in_city = is_home | (rng.random(m) < 0.6)
    other = np.array(["440300", "440600", "441900"])[rng.integers(0, 3, m)]
    city = np.where(in_city, CITY_CODE, other)
    city_names = {"440100": "广州市", "440300": "深圳市", "440600": "佛山市", "441900": "东莞市"}
    city_name_of = pa.array([city_names[c] for c in city], pa.string())
    cert = pc.binary_join_element_wise(
        "粤(",
        pa.array(year_of(day)).cast(pa.string()),
        ")",
        city_name_of,
        "不动产权第",
        _numbered("", 1, m, 7),
        "号",
        "",
    )
    division = np.where(in_city, _district_codes(pop, title_owner), city)
    address = pc.if_else(
        pa.array(is_home),
        _take(pop.hh_address, pop.household[title_owner]),
        pc.binary_join_element_wise(
            city_name_of,
            "新城花园",
            pa.array(rng.integers(1, 60, m)).cast(pa.string()),
            "栋",
            pa.array(rng.integers(101, 3300, m)).cast(pa.string()),
            "室",
            "",
        ),
    )
    # The head's living spouse often co-owns: one row per owner of each title.
    spouse = pop.spouse[title_owner]
    joint = (spouse >= 0) & (rng.random(m) < 0.6) & (pop.death[np.maximum(spouse, 0)] > day)
    joint &= add_years(pop.birth[np.maximum(spouse, 0)], 18) < day
    title = np.concatenate([np.arange(m), np.flatnonzero(joint)])
    owner = np.concatenate([title_owner, spouse[joint]])
    order = np.argsort(title, kind="stable")
    title, owner = title[order], owner[order]
    share = np.where(joint[title], "共同共有", "单独所有")
    area = np.round(np.clip(rng.lognormal(4.45, 0.35, m), 18, 600), 2)
    # Some legacy addresses hold a comma, which the CSV must quote.
    address = pc.if_else(
        pa.array(rng.random(m) < 0.01),
        pc.replace_substring(address, "栋", "栋,", max_replacements=1),
        address,
    )
    return pa.table(
        {
            "certificate_no": _take(cert, title),
            "owner_id": pop.id_at(owner, day[title]),
            "owner_name": _take(pop.name, owner),
            "city_code": pa.array(city[title]),
            "division_code": pa.array(division[title]),
            "address": _take(address, title),
            "area_m2": pa.array(area[title]),
            "share": pa.array(share),
            "registered_on": day_strings(day[title]),
        }
    )


def degrees(pop: Population, rng: np.random.Generator) -> pa.Table:
    born = year_of(pop.birth)
    this_year = year_of(np.array([pop.today]))[0]
    p_higher = np.clip((born - 1945) / 60, 0.03, 0.7)
    holder = np.flatnonzero((pop.age_at(pop.today) >= 21) & (rng.random(pop.size) < p_higher))
    top = rng.choice(4, len(holder), p=[0.30, 0.52, 0.15, 0.03])
    finish_age = np.array([21, 22, 25, 29])
    rows_person, rows_level = [], []
    for rank in range(4):
        # Associate holders stop there; the others hold a bachelor's and up to their top.
        has = (top == rank) if rank == 0 else (top >= rank)
        rows_person.append(holder[has])
        rows_level.append(np.full(has.sum(), rank))
    person = np.concatenate(rows_person)
    level = np.concatenate(rows_level)
    year = born[person] + finish_age[level] + rng.integers(0, 2, len(person))
    # Degrees are held electronically from 1950 on; earlier graduates have no record.
    graduated = (
        (year >= 1950)
        & (year < this_year)
        & (
            pop.birth[person] + (finish_age[level] * YEAR).astype(np.int64)
            < np.minimum(pop.death[person], pop.today)
        )
    )
    person, level, year = person[graduated], level[graduated], year[graduated]
    order = np.lexsort((level, person))
    person, level, year = person[order], level[order], year[order]
    inst = rng.integers(0, len(INSTITUTIONS), len(person))
    codes = np.array([c for c, _ in INSTITUTIONS])
    cert = pc.binary_join_element_wise(
        pa.array(codes[inst]),
        pa.array(year).cast(pa.string()),
        pa.array(level + 1).cast(pa.string()),
        _numbered("", 1, len(person), 8),
        "",
    )
    # Degrees are conferred in July; the holder's ID is the one they carried then.
    on_day = (year.astype(str).astype(object) + "-07-01").astype("datetime64[D]").astype(np.int64)
    return pa.table(
        {
            "certificate_no": cert,
            "holder_id": pop.id_at(person, on_day),
            "holder_name": _take(pop.name, person),
            "level": pa.array(np.array(LEVELS)[level]),
            "institution": pa.array(np.array([name for _, name in INSTITUTIONS])[inst]),
            "graduation_year": pa.array(year),
        }
    )


def build_all(
    pop: Population, rng: np.random.Generator, contribution_months: int
) -> dict[str, pa.Table]:
    """Every dataset of the city, by dataset name, in SPECS order."""
    hospital, cremated = _death_sources(pop, rng)
    marriages, divorces = marriages_and_divorces(pop, rng)
    tables = {
        "household_register": household_register(pop, rng),
        "id_changes": id_changes(pop),
        "criminal_records": criminal_records(pop, rng),
        "births": births(pop, rng),
        "deaths": deaths(pop, rng, hospital),
        "marriages": marriages,
        "divorces": divorces,
        "dibao": dibao(pop, rng),
        "cremations": cremations(pop, rng, cremated),
        "contributions": contributions(pop, rng, contribution_months),
        "pensions": pensions(pop, rng),
        "property": property_titles(pop, rng),
        "degrees": degrees(pop, rng),
    }
    return {spec.name: tables[spec.name] for spec in SPECS}
