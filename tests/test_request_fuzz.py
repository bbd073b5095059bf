"""Property-based fuzzing of the request models (hypothesis): any JSON value, near-valid
record and raw byte string given to the validator either comes back as clean records (every
feature present, numbers finite, categories known) or is refused with a Rejection whose
status is a 4xx; nothing else escapes. Fixed seed, no example database, bounded examples:
the same inputs on every run. Cost: about 10 s on 2 shared cores."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from modelobs.apps.errors import Reason, Rejection
from modelobs.apps.validation import RequestValidator
from modelobs.model.data import EXAMPLE_RECORD
from modelobs.model.store import ModelBundle

SEED = 20261127
BOUNDED = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FEATURES = list(EXAMPLE_RECORD)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),  # lone surrogates included: json.dumps escapes them
)
keys = st.one_of(
    st.sampled_from([*FEATURES, "record", "records", "prediction_id", "label"]),
    st.text(max_size=10),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=8)),
    max_leaves=20,
)
# A valid record, as is or with one feature replaced or removed: near misses, and passes.
near_records = st.tuples(st.sampled_from([None, *FEATURES]), st.booleans(), json_values).map(
    lambda change: {
        **{k: v for k, v in EXAMPLE_RECORD.items() if not (k == change[0] and change[1])},
        **({change[0]: change[2]} if change[0] and not change[1] else {}),
    }
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    near_records.map(lambda r: json.dumps({"record": r}).encode()),
    st.lists(near_records, max_size=3).map(lambda rs: json.dumps({"records": rs}).encode()),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps({"record": v}).encode()[: len(json.dumps(v)) // 2]),
)


@pytest.fixture(scope="module")
def validator(bundle: ModelBundle) -> RequestValidator:
    return RequestValidator(bundle.schema, max_batch_size=256)


def _check_rejection(rejection: Rejection) -> None:
    assert isinstance(rejection.reason, Reason)
    assert 400 <= rejection.status_code < 500
    assert rejection.field and rejection.message


@seed(SEED)
@BOUNDED
@given(body=bodies)
def test_predict_bodies_are_clean_records_or_a_4xx(
    validator: RequestValidator, body: bytes
) -> None:
    try:
        records = validator.records(body)
    except Rejection as rejection:
        _check_rejection(rejection)
        return
    assert records
    categories = validator.contract.categories
    for record in records:
        assert list(record) == list(validator.contract.features)
        for name, value in record.items():
            if categories.get(name):
                assert value in categories[name]
            else:
                assert isinstance(value, float | int) and math.isfinite(value)


@seed(SEED)
@BOUNDED
@given(
    body=st.one_of(
        bodies,
        st.fixed_dictionaries({"prediction_id": json_values, "label": json_values}).map(
            lambda v: json.dumps(v).encode()
        ),
    )
)
def test_feedback_bodies_are_an_id_and_a_class_or_a_4xx(
    validator: RequestValidator, body: bytes
) -> None:
    try:
        prediction_id, label = validator.feedback(body)
    except Rejection as rejection:
        _check_rejection(rejection)
        return
    assert isinstance(prediction_id, str) and prediction_id
    assert label in validator.contract.classes


def test_the_fuzzer_reaches_both_outcomes(validator: RequestValidator) -> None:
    """The strategies are not all-invalid: a valid record passes, a near miss does not."""
    assert validator.records(json.dumps({"record": EXAMPLE_RECORD}).encode())
    with pytest.raises(Rejection):
        validator.records(json.dumps({"record": {**EXAMPLE_RECORD, "age": math.inf}}).encode())
