//! `make edge-up` / `make edge-down` (hack/edge.sh): a node starts, runs a
//! pod with a volume, and goes down leaving nothing behind on the host: no
//! network namespace, veth, route, mount, cgroup or process of its own, and
//! the kernel settings the kubelet changed put back once no node runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

fn edge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(testenv::repo_root().join("hack/edge.sh"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SYSCTLS: &str = "vm.overcommit_memory kernel.panic kernel.panic_on_oops vm.panic_on_oom \
                       kernel.keys.root_maxkeys kernel.keys.root_maxbytes";

#[test]
fn a_node_goes_down_leaving_nothing_behind() {
    let name = format!("lc{}", std::process::id());
    let others_running = !edge(&["list"]).1.trim().is_empty();
    let sysctls_before = sh(&format!("sysctl {SYSCTLS}"));

    // Down even when an assertion fails on the way (and again is a no-op).
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = edge(&["down", "--name", &self.0]);
        }
    }
    let _down = Down(name.clone());

    let started = Instant::now();
    let (ok, stdout, stderr) = edge(&["up", "--name", &name]);
    assert!(ok, "edge.sh up: {stderr}");
    let up_secs = started.elapsed().as_secs_f64();
    let kubeconfig = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("export KUBECONFIG="))
        .expect("the last line exports KUBECONFIG")
        .to_owned();
    let dir = std::path::Path::new(&kubeconfig)
        .parent()
        .unwrap()
        .to_owned();
    let index = std::fs::read_to_string(dir.join("index"))
        .unwrap()
        .trim()
        .to_owned();
    let netns = format!("edge-quota-{index}");
    eprintln!("edge.sh up: {up_secs:.1} s (node index {index})");

    // The node works: a pod writes to a volume from the default StorageClass.
    let kubectl = testenv::TestCluster {
        kubeconfig: kubeconfig.clone().into(),
        bin_dir: testenv::test_env_bin_dir(),
    };
    kubectl.apply_yaml(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer, namespace: default}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532, runAsNonRoot: true}
  containers:
    - name: w
      image: localhost/edge-node/toolbox:1
      imagePullPolicy: Never
      command: [sh, -c, "echo kept > /data/f && cat /data/f"]
      volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
"#,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let phase = kubectl.kubectl_ok(&["get", "pod", "writer", "-o", "jsonpath={.status.phase}"]);
        if phase == "Succeeded" {
            break;
        }
        assert!(
            phase != "Failed" && Instant::now() < deadline,
            "writer: {phase}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(kubectl.kubectl_ok(&["logs", "writer"]).trim(), "kept");
    // While it runs, the node's traces are there (so their absence below
    // means something).
    assert!(sh("ip netns list").contains(&netns));
    assert!(std::path::Path::new(&format!("/sys/fs/cgroup/memory/{netns}")).exists());
    assert!(sh("ip route").contains(&format!("10.202.{index}.0/24")));

    let (ok, _, stderr) = edge(&["down", "--name", &name]);
    assert!(ok, "edge.sh down: {stderr}");

    assert!(!sh("ip netns list").contains(&netns), "{netns} left");
    assert!(
        !sh("ip link").contains(&format!("eqh{index}:")),
        "veth left"
    );
    let routes = sh("ip route");
    for range in ["10.201", "10.202", "10.203"] {
        assert!(
            !routes.contains(&format!("{range}.{index}.")),
            "route left: {routes}"
        );
    }
    let cgroups = sh(&format!("ls -d /sys/fs/cgroup/*/{netns} 2>/dev/null"));
    assert_eq!(cgroups.trim(), "", "cgroups left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir_text = dir.display().to_string();
    assert!(!mounts.contains(&dir_text), "mounts left under {dir_text}");
    assert!(!mounts.contains(&netns), "the namespace's mount left");
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir_text))
        .collect();
    assert!(procs.is_empty(), "processes left: {procs:?}");
    assert!(!dir.exists(), "{dir_text} left");
    if !others_running && edge(&["list"]).1.trim().is_empty() {
        assert_eq!(sh(&format!("sysctl {SYSCTLS}")), sysctls_before);
    }
}
