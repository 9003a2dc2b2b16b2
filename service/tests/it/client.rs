//! The typed client against the real service over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;

use common::TestApp;
use quota_api::v1::{GrantBody, LimitBody, PutBody};
use quota_api::{Client, ClientError};
use quota_service::app;

fn put(parent: Option<&str>, messages: u64) -> PutBody {
    PutBody {
        parent: parent.map(str::to_owned),
        limits: BTreeMap::from([(
            "messages".to_owned(),
            LimitBody {
                max: messages,
                window: None,
            },
        )])
        .into(),
        state: None,
        strict: None,
        name: None,
        description: None,
    }
}

#[tokio::test]
async fn the_client_speaks_the_v1_api() {
    let app_state = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        axum::serve(
            listener,
            app(
                app_state.quotas.clone(),
                quota_service::Authenticator::none(),
            ),
        )
        .into_future(),
    );
    let c = Client::new(&base).unwrap();

    let (org, created) = c.put_node("org", &put(None, 100)).await.unwrap();
    assert!(created);
    assert_eq!(org.resources["messages"].max, 100);
    let (_, created) = c.put_node("org", &put(None, 100)).await.unwrap();
    assert!(!created, "idempotent");
    let (team, _) = c
        .put_node("qa:ns:team", &put(Some("org"), 40))
        .await
        .unwrap();
    assert_eq!(team.parent.as_deref(), Some("org"));

    match c.put_node("qa:ns:big", &put(Some("org"), 70)).await {
        Err(ClientError::Api {
            status: 409,
            code,
            details,
            ..
        }) => {
            assert_eq!(code, "does_not_fit");
            assert_eq!(details.unwrap()["shortages"][0]["missing"], 10);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.get_node("nobody").await.unwrap(), None);
    assert_eq!(
        c.get_node("org").await.unwrap().unwrap().children,
        vec!["qa:ns:team".to_owned()]
    );

    let grant = GrantBody {
        subject: "sa".into(),
        role: "reporter".into(),
    };
    c.grant("qa:ns:team", &grant).await.unwrap();
    assert_eq!(
        c.grants("qa:ns:team").await.unwrap(),
        vec![("sa".to_owned(), "reporter".to_owned())]
    );
    c.revoke("qa:ns:team", &grant).await.unwrap();
    c.revoke("qa:ns:team", &grant).await.unwrap(); // idempotent
    assert!(c.grants("qa:ns:team").await.unwrap().is_empty());

    let snap = c.snapshot(0).await.unwrap();
    assert_eq!(snap.nodes.len(), 2);
    assert!(!snap.instance_id.is_empty());
    assert!(c.snapshot(snap.version).await.unwrap().nodes.is_empty());

    match c.delete_node("org").await {
        Err(e @ ClientError::Api { status: 409, .. }) => assert_eq!(e.code(), Some("has_children")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.delete_node("qa:ns:team").await.unwrap().unwrap().state,
        "deleted"
    );
    assert_eq!(c.delete_node("never").await.unwrap(), None);

    server.abort();
    let _ = server.await;
    assert!(matches!(
        c.get_node("org").await,
        Err(ClientError::Unavailable(_))
    ));
}
