"""Member.predict_row (XGBoost's C call for one row) equals Booster.inplace_predict exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from chaintrade.ensemble import Ensemble, Member, MemberSpec


def _member(name: str, n_features: int, seed: int) -> Member:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, n_features))
    y = (x[:, 0] + 0.5 * x[:, -1] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "base_score": 0.3}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=12)
    features = tuple(f"f{i}" for i in range(n_features))
    return Member(MemberSpec(name, features), booster, 0.5)


def test_predict_row_equals_inplace_predict_bit_for_bit() -> None:
    member = _member("a", 5, 1)
    rows = np.random.default_rng(2).normal(scale=2.0, size=(300, 5))
    for row in rows:
        expected = float(member.booster.inplace_predict(row.reshape(1, -1))[0])
        assert member.predict_row(row) == expected
    # A non-contiguous view is taken as well (copied to a contiguous row).
    wide = np.random.default_rng(3).normal(size=(4, 10))
    view = wide[1, ::2]
    assert member.predict_row(view) == float(member.booster.inplace_predict(view[None, :])[0])


def test_predict_row_refuses_a_row_of_the_wrong_length() -> None:
    member = _member("a", 5, 1)
    with pytest.raises(ValueError, match="takes 5 features"):
        member.predict_row(np.zeros(4))
    with pytest.raises(ValueError, match="takes 5 features"):
        member.predict_row(np.zeros((1, 5)))


def test_predict_vector_equals_the_batch_ensemble() -> None:
    import pandas as pd

    a, b = _member("a", 3, 4), _member("b", 3, 5)
    b = Member(MemberSpec("b", ("f2", "f0", "f9")), b.booster, 0.8)
    ensemble = Ensemble((a, b), "H1", 1)
    frame = pd.DataFrame(np.random.default_rng(6).normal(size=(50, 4)),
                         columns=["f0", "f1", "f2", "f9"])  # fmt: skip
    batch = ensemble.predict(frame)
    for i, values in enumerate(frame[list(ensemble.features)].to_numpy()):
        p_up, members = ensemble.predict_vector(values)
        assert p_up == pytest.approx(batch[i], abs=1e-12)
        assert members == [m.predict_row(frame.loc[i, list(m.spec.features)].to_numpy())
                           for m in ensemble.members]  # fmt: skip
