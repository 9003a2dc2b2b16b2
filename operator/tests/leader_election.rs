//! Leader election on a real Lease: one holder at a time; a second replica
//! takes over only after the holder stops renewing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quota_operator::Elector;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let c = testenv::cluster();
    let client = c.client().await;
    let ns = testenv::namespace(&client, "lease").await;
    let lease = Duration::from_secs(3);
    let a = Elector::new(client.clone(), &ns, "op", "replica-a", lease);
    let b = Elector::new(client.clone(), &ns, "op", "replica-b", lease);

    assert!(a.try_acquire().await.unwrap(), "a takes the free Lease");
    assert!(!b.try_acquire().await.unwrap(), "b cannot while a holds it");
    assert!(a.try_acquire().await.unwrap(), "a renews");
    let holder = c.kubectl_ok(&[
        "get",
        "lease",
        "op",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "replica-a");

    // a keeps renewing in the background: b waits.
    let stop = CancellationToken::new();
    let lost_a = CancellationToken::new();
    let keeper = a.clone().keep(stop.clone(), lost_a.clone());
    tokio::time::sleep(lease * 2).await;
    assert!(!b.try_acquire().await.unwrap(), "a is still renewing");
    assert!(!lost_a.is_cancelled());

    // a stops (crashed): after the lease duration b takes over.
    stop.cancel();
    keeper.await.unwrap();
    let started = Instant::now();
    let b_stop = CancellationToken::new();
    assert!(b.acquire(&b_stop).await, "b becomes leader");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before a's Lease expired"
    );
    let holder = c.kubectl_ok(&[
        "get",
        "lease",
        "op",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}",
    ]);
    assert_eq!(holder, "replica-b 1");

    // a, back, finds the Lease taken: a renewing replica that lost it is told so.
    let lost = CancellationToken::new();
    let a_keeper = a.keep(CancellationToken::new(), lost.clone());
    tokio::time::timeout(lease * 2, lost.cancelled())
        .await
        .expect("a learns it lost the Lease");
    a_keeper.await.unwrap();
}
