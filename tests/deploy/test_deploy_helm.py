"""The Helm chart (deploy/helm/beaconlake): linted and rendered by Helm's own Go SDK, every
rendered manifest validated against the Kubernetes API's schemas (strict: an unknown field is an
error), and the topology checked: collectors in a StatefulSet with a volume each, two jobs pods,
probes, secrets by reference, a grace period that covers the spool's drain, and a ConfigMap that
beaconlake's loader accepts.

What cannot run here: installing it (no cluster on this machine).
"""

from __future__ import annotations

import tomllib

import pytest
import yaml
from deploy_artifacts import (
    CHART,
    CONFIG_MOUNT,
    KUBE_VERSIONS,
    SPOOL_MOUNT,
    documented_env_names,
    env_for,
    helm,
    manifests,
    one,
    render_chart,
)

from beaconlake import config
from beaconlake.up import SCHEDULER_STOP_SECS

VALUE_SETS = {
    "defaults": {},
    "autoscaled": {"collector": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}}},
    "no-persistence": {"collector": {"persistence": {"enabled": False}}},
    "ingress": {"ingress": {"enabled": True, "className": "nginx",
                            "hosts": [{"host": "collect.example.com", "paths": ["/"]}],
                            "tls": [{"hosts": ["collect.example.com"], "secretName": "collect-tls"}]},
                "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/bl"}},
                "extraEnv": [{"name": "BEACONLAKE__SCHEDULE__CONVERT_INTERVAL_MINS", "value": "10"}]},
}


def container(workload):
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def test_helm_lint_finds_nothing_wrong():
    for values in VALUE_SETS.values():
        report = helm().lint(str(CHART), values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], problems or report["errors"]


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_valid_kubernetes(case):
    kv = pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (in the test extra)")
    docs = manifests(render_chart(VALUE_SETS[case]))
    assert docs
    for version in KUBE_VERSIONS:
        target = kv.latest_version() if version == "latest" else version
        for doc in docs:
            try:
                kv.validate(doc, target, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} is not valid Kubernetes {target}: {exc}")


def test_the_schema_check_refuses_an_unknown_field():
    """The check above can fail: a field Kubernetes does not know is refused."""
    kv = pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (in the test extra)")
    sts = one(render_chart(), "StatefulSet", "-collector")
    container(sts)["terminationGracePeriodSecs"] = 120
    with pytest.raises(kv.ValidationError, match="terminationGracePeriodSecs"):
        kv.validate(sts, kv.latest_version(), strict=True)


def test_collectors_are_a_statefulset_with_a_spool_volume_each():
    r = render_chart()
    sts = one(r, "StatefulSet", "-collector")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    c = container(sts)
    assert c["args"] == ["--role", "collector"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["data"] == SPOOL_MOUNT and mounts["config"] + "/beaconlake.toml" == CONFIG_MOUNT
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    node_id = next(e for e in c["env"] if e["name"] == "BEACONLAKE__NODE__ID")
    assert node_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the ingest Service routes to collectors only, and only ready ones (it has no publishNotReadyAddresses)
    svc = one(r, "Service", "bl-beaconlake")
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "collector"
    assert not svc["spec"].get("publishNotReadyAddresses")
    assert sts["spec"]["serviceName"] == one(r, "Service", "-collector-headless")["metadata"]["name"]


def test_jobs_are_two_pods_of_a_deployment_with_scratch_only():
    dep = one(render_chart(), "Deployment", "-jobs")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    c = container(dep)
    assert c["args"] == ["--role", "jobs"]
    data = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert "emptyDir" in data


def test_pods_take_secrets_by_reference_and_run_unprivileged():
    r = render_chart()
    for workload in (one(r, "StatefulSet", "-collector"), one(r, "Deployment", "-jobs")):
        pod = workload["spec"]["template"]["spec"]
        c = container(workload)
        assert c["envFrom"] == [{"secretRef": {"name": "beaconlake-secrets"}}]
        assert all("valueFrom" in e for e in c["env"]), "a literal env value in the chart's defaults"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["automountServiceAccountToken"] is False
    assert not [m for m in manifests(r) if m["kind"] == "Secret"], "the chart must not make the Secret"


def chart_settings(rendered) -> config.Settings:
    text = one(rendered, "ConfigMap", "-config")["data"]["beaconlake.toml"]
    values_text = (CHART / "values.yaml").read_text(encoding="utf-8")
    env = env_for(documented_env_names(values_text))
    env["BEACONLAKE__NODE__ID"] = "bl-beaconlake-collector-0"  # what the pod's fieldRef gives
    return config.parse(tomllib.loads(text), CHART, env)


def test_the_configmap_is_a_config_beaconlake_accepts():
    s = chart_settings(render_chart())
    assert s.node.id == "bl-beaconlake-collector-0"
    assert s.data_dir == SPOOL_MOUNT and s.server.port == 8080
    for seam in ("coordination", "highlevel", "profiles"):
        assert type(getattr(s, seam)).__name__.startswith("Postgres"), seam
    assert type(s.counters).__name__ == "RedisCountersSettings"
    assert s.convert.warehouse_uri(s.data_dir) == f"s3://{s.storage.bucket}/warehouse"


def test_the_grace_period_covers_the_spool_drain():
    r = render_chart()
    s = chart_settings(r)
    needed = s.server.shutdown_timeout_secs + s.delivery.drain_timeout_secs + SCHEDULER_STOP_SECS
    sts = one(r, "StatefulSet", "-collector")
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > needed


def test_autoscaling_hands_the_replica_count_to_the_hpa():
    r = render_chart(VALUE_SETS["autoscaled"])
    sts = one(r, "StatefulSet", "-collector")
    assert "replicas" not in sts["spec"], "a fixed replicas would be reset by every helm upgrade"
    hpa = one(r, "HorizontalPodAutoscaler", "-collector")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": sts["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert not [m for m in manifests(render_chart()) if m["kind"] == "HorizontalPodAutoscaler"]


def test_without_persistence_the_spool_is_an_emptydir_and_the_notes_say_what_that_costs():
    r = render_chart(VALUE_SETS["no-persistence"])
    sts = one(r, "StatefulSet", "-collector")
    assert "volumeClaimTemplates" not in sts["spec"]
    data = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {}}
    notes = r["NOTES.txt"][0]["text"]
    assert "WARNING" in notes and "lost" in notes
    assert "WARNING" not in render_chart()["NOTES.txt"][0]["text"]


def test_a_config_change_rolls_the_pods():
    a = one(render_chart(), "StatefulSet", "-collector")["spec"]["template"]["metadata"]["annotations"]
    default = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["config"]
    values = {"config": default.replace("convert_interval_mins = 5", "convert_interval_mins = 10")}
    b = one(render_chart(values), "StatefulSet", "-collector")["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/config"] != b["checksum/config"]


@pytest.mark.parametrize(("values", "named"), [
    ({"collector": {"replikas": 3}}, "replikas"),
    ({"collector": {"replicas": 0}}, "/collector/replicas"),
    ({"collector": {"terminationGracePeriodSeconds": 10}}, "terminationGracePeriodSeconds"),
    ({"existingSecret": ""}, "/existingSecret"),
    ({"collector": {"persistence": {"enabled": True, "size": "ten gigs"}}}, "/collector/persistence/size"),
])
def test_bad_values_are_refused_naming_them(values, named):
    h = helm()
    with h.Chart.load(str(CHART)) as chart, pytest.raises(h.HelmValuesError, match=named):
        chart.render(values, name="bl")
