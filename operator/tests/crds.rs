//! The CRDs: `crds/` is what the code generates, and on a real API server the
//! CRDs install, explain themselves and enforce their CEL rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

fn repo() -> std::path::PathBuf {
    testenv::repo_root()
}

#[test]
fn crds_in_the_repo_are_up_to_date() {
    for (name, yaml) in quota_operator::crd::render().unwrap() {
        let path = repo().join("crds").join(&name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "{} is stale: run `make generate` and commit the result",
            path.display()
        );
    }
}

fn tq(name: &str, spec: &str) -> String {
    format!(
        "{{\"apiVersion\":\"quota.edgepolicy.io/v1alpha1\",\"kind\":\"TenantQuota\",\"metadata\":{{\"name\":\"{name}\"}},\"spec\":{spec}}}"
    )
}

fn qa(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "{{\"apiVersion\":\"quota.edgepolicy.io/v1alpha1\",\"kind\":\"QuotaAllocation\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"{ns}\"}},\"spec\":{spec}}}"
    )
}

#[tokio::test]
async fn the_api_server_enforces_what_one_object_can_check() {
    let c = testenv::cluster();
    common::install_crds(c);
    let client = c.client().await;
    let ns = testenv::namespace(&client, "crds").await;
    let name = testenv::unique_name("acme");

    // Valid objects are accepted; quantities, windows and defaults work.
    let good = tq(
        &name,
        r#"{"limits":{"messages":{"max":100},"bandwidth":{"max":"100Gi"},"storage":{"max":"10Gi","window":"none"},"requests":{"max":"2k","window":"minute"}},"nearLimitPercent":90,"access":[{"subject":"group:platform","role":"owner"},{"subject":"system:serviceaccount:a:web","role":"reporter"}]}"#,
    );
    let (ok, out) = c.kubectl_stdin(&["apply", "-f", "-"], &good);
    assert!(ok, "{out}");
    let state = c.kubectl_ok(&["get", "tq", &name, "-o", "jsonpath={.spec.state}"]);
    assert_eq!(state, "Active", "state defaults to Active");
    let alloc = qa(
        &ns,
        "team-a",
        &format!(
            r#"{{"parentRef":{{"kind":"TenantQuota","name":"{name}"}},"limits":{{"messages":{{"max":40}}}}}}"#
        ),
    );
    let (ok, out) = c.kubectl_stdin(&["apply", "-f", "-"], &alloc);
    assert!(ok, "{out}");

    // What one object can check by itself is refused at admission.
    let bad_tq = [
        (
            r#"{"limits":{"messages":{"max":-1}}}"#,
            "whole, non-negative quantity such as 100 or 10Gi; got -1",
        ),
        (
            r#"{"limits":{"messages":{"max":"0.5"}}}"#,
            "whole, non-negative quantity such as 100 or 10Gi; got 0.5",
        ),
        (
            r#"{"limits":{"messages":{"max":"100m"}}}"#,
            "whole, non-negative quantity",
        ),
        (
            r#"{"limits":{"messages":{"max":"lots"}}}"#,
            "whole, non-negative quantity",
        ),
        (
            r#"{"limits":{"messages":{"max":1,"window":"hour"}}}"#,
            "messages always has window day",
        ),
        (
            r#"{"limits":{"bandwidth":{"max":1,"window":"day"}}}"#,
            "bandwidth always has window month",
        ),
        (r#"{"limits":{"gpu":{"max":1}}}"#, "needs a window"),
        (
            r#"{"limits":{"gpu":{"max":1,"window":"weekly"}}}"#,
            r#"supported values: "minute", "hour", "day", "month", "none""#,
        ),
        (
            r#"{"limits":{"GPU":{"max":1,"window":"day"}}}"#,
            "resource names must be",
        ),
        (
            r#"{"limits":{"message_count":{"max":1,"window":"day"}}}"#,
            "not message_count (reserved)",
        ),
        (
            r#"{"limits":{}, "nearLimitPercent": 0}"#,
            "nearLimitPercent must be 1-100",
        ),
        (r#"{"limits":{}, "tenantId": "a b"}"#, "tenantId must be"),
        (r#"{"limits":{}, "state": "Paused"}"#, "Unsupported value"),
        (
            r#"{"limits":{}, "access": [{"subject": "x", "role": "superuser"}]}"#,
            "Unsupported value",
        ),
        (r#"{}"#, "limits: Required value"),
    ];
    // `null` is not among the windows the API server names.
    let (_, out) = c.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        &tq("bad", r#"{"limits":{"gpu":{"max":1,"window":"weekly"}}}"#),
    );
    assert!(
        out.contains(r#""none""#) && !out.contains(r#""none", null"#),
        "{out}"
    );
    for (spec, expect) in bad_tq {
        let (ok, out) =
            c.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &tq("bad", spec));
        assert!(
            !ok && out.contains(expect),
            "{spec} should be refused with {expect:?}: {out}"
        );
    }
    let bad_qa = [
        (
            r#"{"parentRef":{"kind":"Namespace","name":"x"},"limits":{}}"#,
            "Unsupported value",
        ),
        (
            r#"{"parentRef":{"kind":"TenantQuota","name":""},"limits":{}}"#,
            "spec.parentRef.name",
        ),
        (
            r#"{"parentRef":{"kind":"TenantQuota","name":"x"},"limits":{"messages":{"max":"-5"}}}"#,
            "whole, non-negative quantity",
        ),
        (r#"{"limits":{}}"#, "parentRef: Required value"),
    ];
    for (spec, expect) in bad_qa {
        let (ok, out) = c.kubectl_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            &qa(&ns, "bad", spec),
        );
        assert!(
            !ok && out.contains(expect),
            "{spec} should be refused with {expect:?}: {out}"
        );
    }

    // Immutable fields: parentRef, and tenantId (also adding or removing it).
    let (ok, out) = c.kubectl_stdin(
        &[
            "patch",
            "qa",
            "team-a",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"parentRef":{"name":"other"}}}"#,
        ],
        "",
    );
    assert!(!ok && out.contains("parentRef is immutable"), "{out}");
    let (ok, out) = c.kubectl_stdin(
        &[
            "patch",
            "tq",
            &name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"tenantId":"other"}}"#,
        ],
        "",
    );
    assert!(!ok && out.contains("tenantId is immutable"), "{out}");
    // Other fields change freely.
    let (ok, out) = c.kubectl_stdin(
        &[
            "patch",
            "tq",
            &name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"limits":{"messages":{"max":200}}}}"#,
        ],
        "",
    );
    assert!(ok, "{out}");

    // kubectl explain reads the descriptions; kubectl get shows the columns.
    let explain = c.kubectl_ok(&["explain", "tq.spec.allocationNamespaceSelector"]);
    assert!(
        explain.contains("Which namespaces may create QuotaAllocations"),
        "{explain}"
    );
    let explain = c.kubectl_ok(&["explain", "qa.status.resources"]);
    assert!(explain.contains("subtreeUsed"), "{explain}");
    // Access: the roles and the namespace's default grant explain themselves.
    let explain = c.kubectl_ok(&["explain", "qa.spec.namespaceAccess"]);
    assert!(
        explain.contains("ServiceAccounts of this allocation's namespace")
            && explain.contains("reporter"),
        "{explain}"
    );
    let explain = c.kubectl_ok(&["explain", "qa.spec.access.role"]);
    assert!(explain.contains("owner"), "{explain}");
    let header = c.kubectl_ok(&["get", "tq", &name]);
    assert!(
        header.starts_with("NAME")
            && ["USAGE", "EXCEEDED", "STATE", "READY", "AGE"]
                .iter()
                .all(|h| header.contains(h)),
        "{header}"
    );
    let header = c.kubectl_ok(&["get", "qa", "-n", &ns]);
    assert!(
        ["PARENT", "USAGE", "EXCEEDED", "BOUND", "REASON", "AGE"]
            .iter()
            .all(|h| header.contains(h)),
        "{header}"
    );
    c.kubectl_ok(&["delete", "tq", &name]);
}
