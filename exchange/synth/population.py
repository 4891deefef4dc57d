"""The people of the synthetic city, generated column-wise with numpy.

Everything here is vectorised: households are laid out as a (households x slots) matrix,
flattened into persons, and every later decision (deaths, marriages, ID changes) is an
array operation. Dates are whole days since 1970-01-01 (int64); `ALIVE` marks no death.

The model keeps the invariants the tests check: every child's parents exist and were alive
and of age at the birth; marriages per person never overlap and divorces follow their
marriage; nobody dies before their last child's birth or their last marriage event; each
resident ID is unique, valid under GB 11643 and agrees with birth date and sex.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faker.providers.person.zh_CN import Provider as ZhNames

from exchange.paths import schemas_dir
from exchange.residentid import check_characters

ALIVE = np.iinfo(np.int64).max
YEAR = 365.2425
EPOCH = dt.date(1970, 1, 1)

HEAD, SPOUSE, CHILD, ELDER = 0, 1, 2, 3
ACTIVE, MOVED_OUT, DECEASED = 0, 1, 2
SLOTS = 7  # head, spouse, three children, two elders


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    city: str
    local: bool
    weight: float


@cache
def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (schemas_dir() / "reference" / "divisions.json").read_text("utf-8")
    )
    return data


def divisions() -> tuple[Division, ...]:
    """GB/T 2260 divisions of the city and of its residents' birthplaces (a contract file)."""
    return tuple(
        Division(d["code"], d["name"], d["city"], d["local"], float(d["weight"]))
        for d in _reference()["divisions"]
    )


def city_name() -> str:
    return str(_reference()["city"]["name"])


def to_days(day: dt.date) -> int:
    return (day - EPOCH).days


def day_strings(days: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD' strings for day numbers, vectorised through Arrow's date cast."""
    return pa.array(days.astype("datetime64[D]"), type=pa.date32()).cast(pa.string())


def month_strings(days: np.ndarray) -> pa.Array:
    return pc.utf8_slice_codeunits(day_strings(days), 0, 7)


def add_years(days: np.ndarray, years: int | np.ndarray) -> np.ndarray:
    """The calendar anniversary `years` after each day (29 February falls on 1 March)."""
    d = np.asarray(days).astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    year = d.astype("datetime64[Y]")
    month_of_year = month - year.astype("datetime64[M]")
    day_of_month = d - month.astype("datetime64[D]")
    shifted = ((year + years).astype("datetime64[M]") + month_of_year).astype("datetime64[D]")
    result: np.ndarray = (shifted + day_of_month).astype(np.int64)
    return result


def full_years(birth: np.ndarray, day: np.ndarray | int) -> np.ndarray:
    """Age in completed years (周岁) on a day, by the calendar."""
    b = np.asarray(birth).astype("datetime64[D]")
    d = np.broadcast_to(np.asarray(day), b.shape).astype("datetime64[D]")
    years = d.astype("datetime64[Y]").astype(np.int64) - b.astype("datetime64[Y]").astype(np.int64)
    birthday = add_years(birth, years)
    result: np.ndarray = years - (d.astype(np.int64) < birthday)
    return result


def legal_marriage_day(birth: np.ndarray, male: np.ndarray) -> np.ndarray:
    """The day a person may first marry: the 22nd birthday for men, the 20th for women."""
    return add_years(birth, np.where(male, 22, 20))


def year_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


@dataclass
class Population:
    """Column arrays describing every person and household of the city."""

    today: int
    household: np.ndarray  # household index per person
    relation: np.ndarray  # HEAD / SPOUSE / CHILD / ELDER
    male: np.ndarray
    birth: np.ndarray
    death: np.ndarray  # ALIVE when alive
    mother: np.ndarray  # person index or -1
    father: np.ndarray
    spouse: np.ndarray  # current spouse or -1
    marriage_date: np.ndarray  # of the current couple, -1 when none
    prior_partner: np.ndarray  # earlier, divorced partner or -1
    prior_married: np.ndarray  # -1 when none
    prior_divorced: np.ndarray
    status: np.ndarray  # ACTIVE / MOVED_OUT / DECEASED in the household register
    ids: pa.Array  # current resident ID numbers
    name: pa.Array
    ethnicity: pa.Array
    hh_division: np.ndarray  # per household: index into divisions()
    hh_address: pa.Array
    hh_number: pa.Array
    changed: np.ndarray  # persons whose ID number changed
    old_ids: pa.Array  # their previous numbers, aligned with `changed`
    change_date: np.ndarray
    change_reason: pa.Array

    @property
    def size(self) -> int:
        return len(self.birth)

    @property
    def households(self) -> int:
        return len(self.hh_division)

    @property
    def dead(self) -> np.ndarray:
        return np.asarray(self.death != ALIVE)

    def age_at(self, day: int | np.ndarray) -> np.ndarray:
        return np.asarray((np.asarray(day) - self.birth) / YEAR)

    def id_at(self, person: np.ndarray, day: np.ndarray) -> pa.Array:
        """The ID number each person carried on a day: the old one before an ID change."""
        current = pc.take(self.ids, pa.array(person))
        changed_on = np.full(self.size, np.iinfo(np.int64).min, dtype=np.int64)
        changed_on[self.changed] = self.change_date
        slot = np.full(self.size, -1, dtype=np.int64)
        slot[self.changed] = np.arange(len(self.changed))
        use_old = day < changed_on[person]
        if not use_old.any():
            return current
        old = pc.take(self.old_ids, pa.array(np.where(use_old, slot[person], 0)))
        return pc.if_else(pa.array(use_old), old, current)


def generate(persons: int, rng: np.random.Generator, today: dt.date) -> Population:
    """Generate `persons` people in households, with kinship, deaths and ID numbers."""
    t = to_days(today)
    h = persons // 2 + 16  # over-provision households, then cut at exactly `persons`

    head_male = rng.random(h) < 0.72
    has_spouse = rng.random(h) < 0.72
    n_children = rng.choice(4, h, p=[0.26, 0.42, 0.26, 0.06])
    n_children[head_male & ~has_spouse] = 0  # a mother must be in the household
    n_elders = rng.choice(3, h, p=[0.80, 0.08, 0.12])

    # Jitter after clipping so the clipped ages do not pile up on one birth day.
    head_age = np.clip(rng.normal(46, 14, h), 23, 94) + rng.uniform(0, 1, h)
    head_birth = t - (head_age * YEAR).astype(np.int64)
    gap = (rng.uniform(0, 5, h) * YEAR).astype(np.int64)
    spouse_birth = np.where(head_male, head_birth + gap, head_birth - gap)
    # A married man is at least 22 and a married woman at least 20 (marriage law).
    youngest = np.where(head_male, 20.5, 22.5) + rng.uniform(0, 2, h)
    spouse_birth = np.minimum(spouse_birth, t - (youngest * YEAR).astype(np.int64))
    mother_birth = np.where(head_male, spouse_birth, head_birth)

    slot_exists = np.zeros((h, SLOTS), dtype=bool)
    slot_birth = np.zeros((h, SLOTS), dtype=np.int64)
    slot_male = np.zeros((h, SLOTS), dtype=bool)
    slot_relation = np.zeros((h, SLOTS), dtype=np.int8)

    slot_exists[:, 0] = True
    slot_birth[:, 0] = head_birth
    slot_male[:, 0] = head_male
    slot_relation[:, 0] = HEAD
    slot_exists[:, 1] = has_spouse
    slot_birth[:, 1] = spouse_birth
    slot_male[:, 1] = ~head_male
    slot_relation[:, 1] = SPOUSE

    mother_age = rng.uniform(21, 33, h)
    for k in range(3):
        child_birth = mother_birth + (mother_age * YEAR).astype(np.int64)
        slot = 2 + k
        slot_exists[:, slot] = (n_children > k) & (child_birth < t - 1)
        slot_birth[:, slot] = child_birth
        slot_male[:, slot] = rng.random(h) < 0.515
        slot_relation[:, slot] = CHILD
        mother_age = mother_age + rng.uniform(1.3, 5.0, h)

    elder_first_male = np.where(n_elders == 2, True, rng.random(h) < 0.4)
    for k in range(2):
        slot = 5 + k
        male = elder_first_male if k == 0 else np.zeros(h, dtype=bool)
        age_gap = np.where(male, rng.uniform(24, 38, h), rng.uniform(21, 35, h))
        slot_exists[:, slot] = n_elders > k
        # Nobody in the city was born more than 118 years ago (jittered, not piled up).
        oldest = t - ((118 - rng.uniform(0, 3, h)) * YEAR).astype(np.int64)
        slot_birth[:, slot] = np.maximum(head_birth - (age_gap * YEAR).astype(np.int64), oldest)
        slot_male[:, slot] = male
        slot_relation[:, slot] = ELDER

    # Flatten households into persons and cut at exactly `persons`.
    flat_exists = slot_exists.ravel()
    position = np.cumsum(flat_exists) - 1
    flat_exists &= position < persons
    if flat_exists.sum() < persons:
        raise AssertionError("household over-provisioning fell short")  # pragma: no cover
    index = np.where(flat_exists, position, -1).reshape(h, SLOTS)
    chosen = np.flatnonzero(flat_exists)
    household = chosen // SLOTS
    households = int(household[-1]) + 1
    index = index[:households]
    head_male, has_spouse = head_male[:households], has_spouse[:households]

    relation = slot_relation.ravel()[chosen]
    male = slot_male.ravel()[chosen]
    birth = slot_birth.ravel()[chosen]
    n = persons

    mother = np.full(n, -1, dtype=np.int64)
    father = np.full(n, -1, dtype=np.int64)
    spouse = np.full(n, -1, dtype=np.int64)
    head_i, spouse_i = index[:, 0], index[:, 1]
    mum = np.where(head_male, spouse_i, head_i)
    dad = np.where(head_male, head_i, np.where(has_spouse, spouse_i, -1))
    for slot in (2, 3, 4):
        kid = index[:, slot]
        ok = kid >= 0
        mother[kid[ok]] = mum[ok]
        father[kid[ok]] = dad[ok]
    elder_m, elder_f = index[:, 5], index[:, 6]
    first_elder_male = slot_male[:households, 5]
    grandpa = np.where(first_elder_male, elder_m, -1)
    grandma = np.where(first_elder_male, elder_f, elder_m)
    has_head = head_i >= 0
    father[head_i[has_head]] = grandpa[has_head]
    mother[head_i[has_head]] = grandma[has_head]
    couple = (head_i >= 0) & (spouse_i >= 0)
    spouse[head_i[couple]] = spouse_i[couple]
    spouse[spouse_i[couple]] = head_i[couple]
    elders_couple = (elder_m >= 0) & (elder_f >= 0)  # two elders are the head's parents
    spouse[elder_m[elders_couple]] = elder_f[elders_couple]
    spouse[elder_f[elders_couple]] = elder_m[elders_couple]

    marriage_date = _current_marriages(rng, n, t, male, birth, mother, father, spouse)
    prior = _prior_marriages(rng, t, relation, male, birth, spouse, marriage_date)
    prior_partner, prior_married, prior_divorced = prior
    death = _deaths(rng, t, birth, mother, father, marriage_date, prior_divorced)

    divs = divisions()
    weights = np.array([d.weight for d in divs])
    local = np.array([d.local for d in divs])
    local_p = np.where(local, weights, 0) / np.where(local, weights, 0).sum()
    all_p = weights / weights.sum()
    hh_division = rng.choice(len(divs), households, p=local_p)
    born_here = (relation == CHILD) | (rng.random(n) < 0.62)
    birth_division = np.where(
        relation == CHILD,
        hh_division[household],
        np.where(born_here, rng.choice(len(divs), n, p=local_p), rng.choice(len(divs), n, p=all_p)),
    )

    status = np.full(n, ACTIVE, dtype=np.int8)
    dead = death != ALIVE
    status[dead & (rng.random(n) < 0.96)] = DECEASED  # a few cancellations lag behind
    adult = (t - birth) / YEAR >= 18
    status[~dead & adult & (rng.random(n) < 0.02)] = MOVED_OUT

    codes = np.array([int(d.code) for d in divs], dtype=np.int64)
    ids, digits = _resident_ids(rng, codes[birth_division], birth, male)
    changed, old_ids, change_date, reason = _id_changes(rng, t, birth, dead, codes, digits)

    name = _names(rng, household, relation, male, index, head_male)
    ethnic = np.array(["汉", "壮", "回", "满", "瑶", "土家", "苗", "畲"])
    ethnicity = pa.array(
        ethnic[rng.choice(len(ethnic), n, p=[0.93, 0.025, 0.01, 0.01, 0.008, 0.007, 0.006, 0.004])]
    )

    return Population(
        today=t,
        household=household,
        relation=relation,
        male=male,
        birth=birth,
        death=death,
        mother=mother,
        father=father,
        spouse=spouse,
        marriage_date=marriage_date,
        prior_partner=prior_partner,
        prior_married=prior_married,
        prior_divorced=prior_divorced,
        status=status,
        ids=ids,
        name=name,
        ethnicity=ethnicity,
        hh_division=hh_division,
        hh_address=_addresses(rng, hh_division, households),
        hh_number=pc.utf8_lpad(
            pa.array(np.arange(1, households + 1) * 7 + 100_000_000).cast(pa.string()), 9, "0"
        ),
        changed=changed,
        old_ids=old_ids,
        change_date=change_date,
        change_reason=reason,
    )


def _current_marriages(
    rng: np.random.Generator,
    n: int,
    t: int,
    male: np.ndarray,
    birth: np.ndarray,
    mother: np.ndarray,
    father: np.ndarray,
    spouse: np.ndarray,
) -> np.ndarray:
    """The registration day of every current couple, the same on both sides."""
    legal = legal_marriage_day(birth, male)
    first_child = np.full(n, ALIVE, dtype=np.int64)
    kids = np.flatnonzero(mother >= 0)
    np.minimum.at(first_child, mother[kids], birth[kids])
    np.minimum.at(first_child, father[kids[father[kids] >= 0]], birth[kids[father[kids] >= 0]])
    marriage = np.full(n, -1, dtype=np.int64)
    wife = np.flatnonzero((spouse >= 0) & ~male)
    husband = spouse[wife]
    earliest = np.maximum(legal[wife], legal[husband])
    latest = np.minimum(np.minimum(first_child[wife], t) - int(0.3 * YEAR), t - 1)
    wanted = earliest + (rng.gamma(2.0, 1.5, len(wife)) * YEAR).astype(np.int64)
    day = np.maximum(np.minimum(wanted, latest), earliest)
    day = np.minimum(day, t - 1)
    marriage[wife] = day
    marriage[husband] = day
    return marriage


def _prior_marriages(
    rng: np.random.Generator,
    t: int,
    relation: np.ndarray,
    male: np.ndarray,
    birth: np.ndarray,
    spouse: np.ndarray,
    marriage_date: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earlier marriages that ended in divorce, each between two people of the city.

    Partners come from single household heads, each used at most once, so every person
    has at most one earlier marriage and it ends before any current one begins.
    """
    n = len(birth)
    partner = np.full(n, -1, dtype=np.int64)
    married = np.full(n, -1, dtype=np.int64)
    divorced = np.full(n, -1, dtype=np.int64)
    legal = legal_marriage_day(birth, male)
    single = np.flatnonzero((relation == HEAD) & (spouse < 0) & ((t - birth) / YEAR >= 26))
    single = single[rng.permutation(len(single))]
    in_couple = np.flatnonzero((spouse >= 0) & (rng.random(n) < 0.12))

    def pair(a: np.ndarray, b: np.ndarray, end_by: np.ndarray) -> np.ndarray:
        start = np.maximum(legal[a], legal[b]) + (rng.uniform(0, 4, len(a)) * YEAR).astype(np.int64)
        end = start + (rng.uniform(1, 9, len(a)) * YEAR).astype(np.int64)
        ok: np.ndarray = (start < end) & (end < end_by - 30)
        a, b, start, end = a[ok], b[ok], start[ok], end[ok]
        for x, y in ((a, b), (b, a)):
            partner[x], married[x], divorced[x] = y, start, end
        return ok

    for sex in (True, False):
        first = in_couple[male[in_couple] == sex]
        pool = single[male[single] != sex]
        pool = pool[(partner[pool] < 0)][: len(first)]
        first = first[: len(pool)]
        pair(first, pool, marriage_date[first])
    rest = single[partner[single] < 0]
    men, women = rest[male[rest]], rest[~male[rest]]
    k = int(min(len(men), len(women)) * 0.2)
    pair(men[:k], women[:k], np.full(k, t, dtype=np.int64))
    return partner, married, divorced


def _deaths(
    rng: np.random.Generator,
    t: int,
    birth: np.ndarray,
    mother: np.ndarray,
    father: np.ndarray,
    marriage_date: np.ndarray,
    prior_divorced: np.ndarray,
) -> np.ndarray:
    """Death days by a Gompertz hazard, never before a person's last child or marriage event."""
    n = len(birth)
    age = (t - birth) / YEAR
    # Gompertz: probability of having died by the age one would have today.
    p_dead = 1 - np.exp(-(0.00003 / 0.095) * (np.exp(0.095 * age) - 1))
    dies = rng.random(n) < p_dead
    floor = np.maximum(birth, np.maximum(marriage_date, prior_divorced))
    kids = np.flatnonzero(mother >= 0)
    np.maximum.at(floor, mother[kids], birth[kids])
    with_father = kids[father[kids] >= 0]
    np.maximum.at(floor, father[with_father], birth[with_father])
    floor = np.maximum(floor, t - int(25 * YEAR)) + 1
    day = floor + (rng.random(n) * (t - floor)).astype(np.int64)
    return np.where(dies & (floor < t), day, ALIVE)


def _resident_ids(
    rng: np.random.Generator, division: np.ndarray, birth: np.ndarray, male: np.ndarray
) -> tuple[pa.Array, np.ndarray]:
    """Unique GB 11643 numbers; sequence numbers are odd for men and even for women."""
    n = len(birth)
    days = birth.astype("datetime64[D]")
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    ymd = year * 10_000 + month * 100 + day
    # Rank people within (division, birth day, sex) and give each a distinct sequence slot,
    # starting at a random offset per group so numbers do not all begin at 001.
    group = (division * 100_000_000 + ymd) * 2 + male
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    offset = rng.integers(0, 499, n)
    offset_by_group = np.empty(n, dtype=np.int64)
    offset_by_group[order] = offset[order][group_start]
    if rank.max(initial=0) >= 499:
        raise AssertionError("more than 499 people share a division, birth day and sex")
    k = (offset_by_group + rank) % 499
    seq = np.where(male, 2 * k + 1, 2 * k + 2)
    digits = _digits(division * 100_000_000 + ymd, 14)
    digits = np.concatenate([digits, _digits(seq, 3)], axis=1)
    return _id_strings(digits), digits


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def _id_strings(digits17: np.ndarray) -> pa.Array:
    codes = np.concatenate(
        [(digits17 + 48).astype(np.uint8), check_characters(digits17)[:, None]], axis=1
    )
    # Eighteen ASCII bytes per ID: the matrix already is an Arrow string data buffer.
    offsets = np.arange(0, (len(codes) + 1) * 18, 18, dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(codes))]
    return pa.Array.from_buffers(pa.string(), len(codes), buffers)


def _id_changes(
    rng: np.random.Generator,
    t: int,
    birth: np.ndarray,
    dead: np.ndarray,
    codes: np.ndarray,
    digits: np.ndarray,
) -> tuple[np.ndarray, pa.Array, np.ndarray, pa.Array]:
    """A few adults changed ID number: a division recode, a birth-date fix or a duplicate fix."""
    n = len(birth)
    candidates = np.flatnonzero(~dead & ((t - birth) / YEAR >= 20) & (rng.random(n) < 0.003))
    kind = rng.integers(0, 3, len(candidates))
    old = digits[candidates].copy()
    local = codes[: sum(d.local for d in divisions())]
    new_division = local[rng.integers(0, len(local), len(candidates))]
    old[kind == 0, :6] = _digits(new_division, 6)[kind == 0]
    shifted = birth[candidates] + rng.integers(1, 400, len(candidates))
    shifted_days = shifted.astype("datetime64[D]")
    ymd = (
        (shifted_days.astype("datetime64[Y]").astype(np.int64) + 1970) * 10_000
        + (shifted_days.astype("datetime64[M]").astype(np.int64) % 12 + 1) * 100
        + (shifted_days - shifted_days.astype("datetime64[M]")).astype(np.int64)
        + 1
    )
    old[kind == 1, 6:14] = _digits(ymd, 8)[kind == 1]
    seq = old[:, 14] * 100 + old[:, 15] * 10 + old[:, 16]
    old[kind == 2, 14:17] = _digits((seq + 2 * rng.integers(1, 50, len(candidates))) % 1000, 3)[
        kind == 2
    ]
    # Keep only changes whose old number is new to the city and to each other.
    key = old @ (10 ** np.arange(16, -1, -1, dtype=np.int64))
    current = digits @ (10 ** np.arange(16, -1, -1, dtype=np.int64))
    _, first = np.unique(key, return_index=True)
    unique = np.zeros(len(key), dtype=bool)
    unique[first] = True
    keep = unique & ~np.isin(key, current)
    candidates, old, kind = candidates[keep], old[keep], kind[keep]
    order = np.argsort(candidates)
    candidates, old, kind = candidates[order], old[order], kind[order]
    low = birth[candidates] + int(16 * YEAR)
    change = low + (rng.random(len(candidates)) * (t - 1 - low)).astype(np.int64)
    reasons = np.array(["行政区划调整", "出生日期更正", "重号更正"])
    return candidates, _id_strings(old), change, pa.array(reasons[kind])


def _names(
    rng: np.random.Generator,
    household: np.ndarray,
    relation: np.ndarray,
    male: np.ndarray,
    index: np.ndarray,
    head_male: np.ndarray,
) -> pa.Array:
    """Names from Faker's zh_CN lists: children and the head's father carry the family name."""
    n = len(household)
    surnames = list(ZhNames.last_names.keys())
    weights = np.array(list(ZhNames.last_names.values()), dtype=float)
    weights /= weights.sum()
    own = rng.choice(len(surnames), n, p=weights)
    family = own[np.maximum(index[:, 0], 0)]  # the head's surname
    # When the head is a woman the children take her husband's name.
    husband = np.where(head_male, index[:, 0], index[:, 1])
    fathers_name = np.where(husband >= 0, own[np.maximum(husband, 0)], family)
    is_head_father = (relation == ELDER) & male
    surname_idx = np.where(relation == CHILD, fathers_name[household], own)
    surname_idx = np.where(is_head_father, family[household], surname_idx)
    male_given = pa.array(ZhNames.first_names_male)
    female_given = pa.array(ZhNames.first_names_female)
    single = pa.array(
        [s for s in ZhNames.first_names_male + ZhNames.first_names_female if len(s) == 1]
    )

    def given(size: int, pool: pa.Array) -> pa.Array:
        return pc.take(pool, pa.array(rng.integers(0, len(pool), size)))

    first = pc.if_else(pa.array(male), given(n, male_given), given(n, female_given))
    two_chars = pc.and_(pc.equal(pc.utf8_length(first), 1), pa.array(rng.random(n) < 0.55))
    second = pc.if_else(two_chars, given(n, single), pa.scalar(""))
    surname = pc.take(pa.array(surnames), pa.array(surname_idx))
    return pc.binary_join_element_wise(surname, first, second, "")


STREETS = (
    "中山",
    "解放",
    "人民",
    "建设",
    "和平",
    "新华",
    "东风",
    "文化",
    "胜利",
    "友谊",
    "长江",
    "黄埔",
    "迎宾",
    "青年",
    "光明",
    "花园",
    "滨江",
    "体育",
    "环市",
    "工业",
    "天河",
    "沿江",
)
STREET_KINDS = ("路", "大道", "街", "北路", "南路", "东路", "西路")


def _addresses(rng: np.random.Generator, hh_division: np.ndarray, households: int) -> pa.Array:
    district = pa.array([city_name() + d.name for d in divisions()])
    street = pc.binary_join_element_wise(
        pc.take(pa.array(STREETS), pa.array(rng.integers(0, len(STREETS), households))),
        pc.take(pa.array(STREET_KINDS), pa.array(rng.integers(0, len(STREET_KINDS), households))),
        "",
    )
    number = pa.array(rng.integers(1, 900, households)).cast(pa.string())
    building = pa.array(rng.integers(1, 40, households)).cast(pa.string())
    room = pa.array(rng.integers(1, 33, households) * 100 + rng.integers(1, 9, households)).cast(
        pa.string()
    )
    return pc.binary_join_element_wise(
        pc.take(district, pa.array(hh_division)),
        street,
        number,
        "号",
        building,
        "栋",
        room,
        "室",
        "",
    )
