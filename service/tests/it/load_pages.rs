//! The startup load reads nodes in pages (5,000 by default), fetching the
//! next page while the previous one is built, and handed over, on another
//! thread: loaded in pages of a few nodes, every node, limit, usage row and
//! claim comes back exactly as in one page, and each node is handed over
//! once, on the suite's real store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use axum::http::{Method, StatusCode};
use common::{TestApp, open_store};
use serde_json::json;

fn described(mut nodes: Vec<quota_service::storage::LoadedNode>) -> Vec<String> {
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes
        .iter()
        .map(|n| format!("{} {:?} {:?}", n.id, n.node, n.claims))
        .collect()
}

#[tokio::test]
async fn a_load_in_small_pages_reads_what_one_page_reads() {
    let app = TestApp::new().await;
    // Flat tenants with usage, a tree with a suspended child and a claim.
    for i in 0..23 {
        let (s, v) = app
            .post(
                "/api/quota/increment",
                json!({"tenant_id": format!("t-{i:02}"), "message_count": i + 1, "bytes_sent": 10 * i}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let put = |id: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            let (s, v) = app
                .call(
                    Method::PUT,
                    &format!("/api/v1/quotas/{id}"),
                    Some(&body.to_string()),
                )
                .await;
            assert!(s.is_success(), "{id}: {v}");
        }
    };
    put(
        "org",
        json!({"limits": {"messages": {"max": 1000, "window": "day"}, "volumes": {"max": 10, "window": "none"}}}),
    )
    .await;
    put(
        "org-a",
        json!({"parent": "org", "limits": {"messages": {"max": 100}}, "name": "Team A"}),
    )
    .await;
    put(
        "org-b",
        json!({"parent": "org", "limits": {"messages": {"max": 50}}, "state": "suspended"}),
    )
    .await;
    let (s, v) = app
        .post(
            "/api/v1/quotas/org/usage/allocate",
            json!({"resource": "volumes", "resource_id": "pvc-1", "amount": 3, "reason": "test"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = app
        .post(
            "/api/v1/quotas/org-a/consume",
            json!({"usage": {"messages": 7}}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    app.quotas.flush().await.expect("flush");

    let data = app.dir.path().join("data");
    let whole = open_store(&data).await;
    let (one_page, v1) = whole.load(common::noon_nov22()).await.expect("load");
    let mut paged = open_store(&data).await;
    paged.set_load_page(4);
    let (pages, v2) = paged.load(common::noon_nov22()).await.expect("paged load");

    assert_eq!(one_page.len(), 26, "23 tenants and 3 nodes");
    assert_eq!(v1, v2);
    assert_eq!(described(pages), described(one_page));
}

/// Records the pages a read hands over.
#[derive(Default)]
struct Pages(Vec<Vec<String>>);

impl quota_service::storage::NodeSink for Pages {
    fn take(&mut self, page: Vec<quota_service::storage::LoadedNode>) {
        self.0.push(page.into_iter().map(|n| n.id).collect());
    }
}

#[tokio::test]
async fn a_load_hands_over_every_node_once_a_page_at_a_time() {
    let app = TestApp::new().await;
    for i in 0..23 {
        let (s, v) = app
            .post(
                "/api/quota/increment",
                json!({"tenant_id": format!("t-{i:02}"), "message_count": 1}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    app.quotas.flush().await.expect("flush");

    let mut paged = open_store(&app.dir.path().join("data")).await;
    paged.set_load_page(5);
    let (version, Pages(pages)) = paged
        .load_into(common::noon_nov22(), Pages::default())
        .await
        .expect("load into a sink");
    let (_, v) = paged.load(common::noon_nov22()).await.expect("load");
    assert_eq!(version, v);
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [5, 5, 5, 5, 3],
        "pages of at most 5, in order"
    );
    let ids: Vec<String> = pages.concat();
    let expected: Vec<String> = (0..23).map(|i| format!("t-{i:02}")).collect();
    assert_eq!(ids, expected, "every node once, in id order");
    assert_eq!(paged.node_count().await.expect("count"), 23);
}
