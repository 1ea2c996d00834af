"""Garbage collection through ownerReferences, with the three propagation policies."""

import json

from e2e_util import wait_until


def make_owner_and_dependent(kubectl, ns, owner, dependent):
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": owner}, "data": {"role": "owner"}}))
    uid = kubectl("get", "cm", owner, "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout.strip()
    assert uid
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": dependent, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": True}]},
        "data": {"role": "dependent"},
    }))
    return uid


def exists(kubectl, ns, name):
    return kubectl("get", "cm", name, "-n", ns, "--ignore-not-found", "-o", "name").stdout.strip() != ""


def test_background_deletion_removes_dependents(kubectl, ns):
    make_owner_and_dependent(kubectl, ns, "owner", "dep")
    kubectl("delete", "cm", "owner", "-n", ns, "--cascade=background")
    wait_until(lambda: not exists(kubectl, ns, "dep"), "the dependent to be garbage collected")


def test_orphan_deletion_keeps_dependents_without_owner_reference(kubectl, ns):
    make_owner_and_dependent(kubectl, ns, "owner", "dep")
    kubectl("delete", "cm", "owner", "-n", ns, "--cascade=orphan")
    wait_until(lambda: not exists(kubectl, ns, "owner"), "the owner to be deleted")
    dep = json.loads(kubectl("get", "cm", "dep", "-n", ns, "-o", "json").stdout)
    assert "ownerReferences" not in dep["metadata"], dep["metadata"]


def test_foreground_deletion_waits_for_dependents(kubectl, ns):
    make_owner_and_dependent(kubectl, ns, "owner", "dep")
    kubectl("delete", "cm", "owner", "-n", ns, "--cascade=foreground", "--wait=true", "--timeout=30s")
    assert not exists(kubectl, ns, "dep")
    assert not exists(kubectl, ns, "owner")


def test_dependent_of_missing_owner_is_collected(kubectl, ns):
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "stray", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "00000000-0000-0000-0000-000000000000"}]},
    }))
    wait_until(lambda: not exists(kubectl, ns, "stray"), "an object whose owner never existed to be collected")
