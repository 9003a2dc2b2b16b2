//! A real single-node cluster where pods run (`hack/edge.sh`), with the
//! project's image built without a registry (`hack/image.sh`) and loaded
//! into its containerd.
//!
//! ```text
//!  test binary ──(first use)──▶ hack/edge.sh up --name t<pid> --owner-pid <pid>
//!       │                       hack/image.sh edge-quota; hack/edge.sh load
//!       └── kubectl / helm ──▶ https://10.201.<i>.2:6443 (the node's netns)
//!  test binary exits ──▶ the node's reaper takes it down
//! ```
//!
//! One node per test binary, shared by its tests (each in its own
//! namespace). It needs root; a machine without the node's binaries builds
//! them (`make edge-env`) or the test fails naming that command.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{TestCluster, built_dir, last_line, repo_root, run};

/// A running edge node with the project's image loaded.
#[derive(Debug)]
pub struct EdgeNode {
    /// kubectl and helm against the node's API server (admin).
    pub cluster: TestCluster,
    /// The node's name (`hack/edge.sh --name`).
    pub name: String,
    /// The Kubernetes Node object's name.
    pub node_name: String,
    /// The project's image as loaded into the node.
    pub image: Image,
}

/// An image reference split the way the chart's values take it.
#[derive(Debug, Clone)]
pub struct Image {
    pub repository: String,
    pub tag: String,
}

/// The edge node of this test binary, started on first use.
///
/// # Panics
/// When the node does not start or the image cannot be built: a test that
/// needs the node fails, it never skips.
pub fn edge_node() -> &'static EdgeNode {
    static NODE: OnceLock<EdgeNode> = OnceLock::new();
    NODE.get_or_init(|| match start() {
        Ok(n) => n,
        Err(e) => panic!("edge node unavailable: {e}"),
    })
}

fn start() -> Result<EdgeNode, String> {
    let hack = repo_root().join("hack");
    let bin_dir = built_dir("test-env.sh", "make test-env")?;
    built_dir("edge-env.sh", "make edge-env")?;

    let pid = std::process::id();
    let name = format!("t{pid}");
    let up = run(Command::new(hack.join("edge.sh")).args([
        "up",
        "--name",
        &name,
        "--owner-pid",
        &pid.to_string(),
    ]))?;
    if !up.status.success() {
        return Err(format!(
            "hack/edge.sh up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        ));
    }
    let line = last_line(&up.stdout);
    let kubeconfig = line
        .strip_prefix("export KUBECONFIG=")
        .ok_or_else(|| format!("unexpected output of edge.sh up: {line:?}"))?;

    let cache = crate::cache_root();
    let archive = cache.join("images").join(format!("edge-quota-{name}.tar"));
    let built = run(Command::new(hack.join("image.sh"))
        .arg("edge-quota")
        .arg("--out")
        .arg(&archive))?;
    if !built.status.success() {
        return Err(format!(
            "hack/image.sh edge-quota failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    let reference = last_line(&built.stdout);
    let loaded = run(Command::new(hack.join("edge.sh"))
        .args(["load", "--name", &name])
        .arg(&archive))?;
    // The node has its copy now; the archive was only the way in.
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_dir_all(archive.with_extension("oci"));
    if !loaded.status.success() {
        return Err(format!(
            "hack/edge.sh load failed:\n{}",
            String::from_utf8_lossy(&loaded.stderr)
        ));
    }
    let (repository, tag) = reference
        .rsplit_once(':')
        .ok_or_else(|| format!("image reference without a tag: {reference:?}"))?;

    Ok(EdgeNode {
        cluster: TestCluster {
            kubeconfig: PathBuf::from(kubeconfig),
            bin_dir,
        },
        node_name: format!("edge-{name}"),
        name,
        image: Image {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        },
    })
}
