"""The flows' DVC side without servers: the stage order comes from DVC's graph of the real
dvc.yaml, and params overrides are parsed and checked as `dvc exp run -S` takes them."""

import pytest
import yaml
from dvc.repo import Repo

from emogen.cli import STAGES
from emogen.errors import UserError
from emogen.orchestration import dag_stages, fingerprint, params_with_overrides, parse_overrides
from tests.helpers.paths import REPO


def test_dag_order_is_dvcs_and_lists_every_stage():
    order = dag_stages(REPO)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert len(order) == len(set(order))
    with Repo(str(REPO)) as repo:  # foreach stages expand to e.g. baseline@prompt
        assert {s.name for s in repo.index.stages} == set(order)
        assert set(STAGES) <= {s.cmd.split()[-1] for s in repo.index.stages}  # `emogen stage <name>`
    for name, stage in stages.items():  # every stage after each stage whose output it reads
        for other, upstream in stages.items():
            produced = {
                next(iter(o)) if isinstance(o, dict) else o
                for key in ("outs", "metrics", "plots")
                for o in upstream.get(key, [])
            }
            if other != name and produced & set(stage.get("deps", [])):
                assert order.index(other) < order.index(name), (other, name)
    assert dag_stages(REPO, "validate") == ["prepare_data", "ingest", "validate"]
    with pytest.raises(UserError, match="no stage named 'nope'"):
        dag_stages(REPO, "nope")


def test_overrides_parse_as_dvc_writes_them(tmp_path):
    assert parse_overrides(["stage2.lambda_attr=0.02", "stage1.mixed_precision=no"]) == {
        "stage2.lambda_attr": 0.02,
        "stage1.mixed_precision": "no",
    }
    with pytest.raises(UserError, match="write KEY=VALUE"):
        parse_overrides(["stage2.lambda_attr"])
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    raw = params_with_overrides(tmp_path, {"stage2.lambda_attr": 0.5})
    assert raw["stage2"]["lambda_attr"] == 0.5
    assert fingerprint(raw) != fingerprint(params_with_overrides(tmp_path, {}))
    with pytest.raises(UserError, match=r"stage2.lambda_atr"):
        params_with_overrides(tmp_path, {"stage2.lambda_atr": 0.5})
