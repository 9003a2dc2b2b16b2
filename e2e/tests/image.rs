//! `make image` (hack/image.sh, no registry, no engine) and the Dockerfile
//! build the same image: the same paths, user, entrypoint, environment,
//! ports and volume. The Dockerfile's final stage is read from the file, so
//! an edit to one without the other fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What an image's configuration and files promise, in the form both
/// sources can be reduced to.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    user: String,
    entrypoint: Vec<String>,
    env: BTreeSet<String>,
    ports: BTreeSet<String>,
    volumes: BTreeSet<String>,
    binaries: BTreeSet<String>,
}

/// The final stage of the Dockerfile: USER, ENTRYPOINT, ENV, EXPOSE,
/// VOLUME and the binaries its COPY puts in place.
fn dockerfile_layout(text: &str) -> Layout {
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            lines.push(std::mem::take(&mut current));
        }
    }
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let build_stage = &lines[..last_from];
    let final_stage = &lines[last_from..];
    let arg = |line: &str, word: &str| line.strip_prefix(word).map(|r| r.trim().to_owned());
    let json_list = |s: &str| -> Vec<String> { serde_json::from_str(s).expect("a JSON list") };

    let mut layout = Layout {
        // distroless ":nonroot" images run as 65532 unless USER says otherwise.
        user: String::new(),
        entrypoint: Vec::new(),
        env: BTreeSet::new(),
        ports: BTreeSet::new(),
        volumes: BTreeSet::new(),
        binaries: BTreeSet::new(),
    };
    for line in final_stage {
        if let Some(u) = arg(line, "USER") {
            layout.user = u;
        } else if let Some(e) = arg(line, "ENTRYPOINT") {
            layout.entrypoint = json_list(&e);
        } else if let Some(e) = arg(line, "ENV") {
            layout.env.extend(e.split_whitespace().map(str::to_owned));
        } else if let Some(p) = arg(line, "EXPOSE") {
            layout
                .ports
                .extend(p.split_whitespace().map(|p| format!("{p}/tcp")));
        } else if let Some(v) = arg(line, "VOLUME") {
            layout.volumes.extend(json_list(&v));
        } else if let Some(c) = arg(line, "COPY") {
            // COPY --from=build /out/ /usr/local/bin/: what the build stage
            // installed into /out lands in the destination.
            let parts: Vec<&str> = c.split_whitespace().collect();
            let dest = parts.last().expect("a destination").trim_end_matches('/');
            for l in build_stage {
                for word in l.split_whitespace() {
                    if let Some(name) = word.strip_prefix("/out/")
                        && !name.is_empty()
                    {
                        layout.binaries.insert(format!("{dest}/{name}"));
                    }
                }
            }
        }
    }
    layout
}

/// The image hack/image.sh wrote: its config from the OCI layout and the
/// executables of its layers.
fn oci_layout(dir: &Path) -> (Layout, Vec<String>) {
    let read = |p: &Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
    };
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(&dir.join("index.json"));
    let manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = read(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut listing = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = Command::new("tar")
            .arg("--numeric-owner")
            .arg("-tvzf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        listing.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    let binaries = listing
        .iter()
        .filter(|l| l.starts_with("-rwx"))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| format!("/{}", p.trim_start_matches("./")))
        .filter(|p| p.starts_with("/usr/local/bin/"))
        .collect();
    let layout = Layout {
        user: c["User"].as_str().unwrap_or_default().to_owned(),
        entrypoint: strings(&c["Entrypoint"]),
        env: strings(&c["Env"]).into_iter().collect(),
        ports: keys(&c["ExposedPorts"]),
        volumes: keys(&c["Volumes"]),
        binaries,
    };
    (layout, listing)
}

#[test]
fn make_image_and_the_dockerfile_build_the_same_layout() {
    let root = testenv::repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let want = dockerfile_layout(&dockerfile);
    assert_eq!(want.user, "65532:65532");
    assert_eq!(want.entrypoint, ["/usr/local/bin/quota-service"]);
    assert!(
        want.binaries.contains("/usr/local/bin/quota-operator"),
        "{want:?}"
    );

    let out_dir = tempfile_dir();
    let archive = out_dir.join("edge-quota.tar");
    let built = Command::new(root.join("hack/image.sh"))
        .arg("edge-quota")
        .arg("--out")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "hack/image.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let (mut got, listing) = oci_layout(&out_dir.join("edge-quota.oci"));
    // The Dockerfile's base image sets PATH; only ours is compared.
    got.env.retain(|e| !e.starts_with("PATH="));
    assert_eq!(got, want);

    // What distroless cc-debian12:nonroot brings, at the same paths.
    let has = |path: &str, owner: &str| {
        listing
            .iter()
            .any(|l| l.ends_with(path) && (owner.is_empty() || l.contains(owner)))
    };
    for (path, owner) in [
        ("etc/passwd", ""),
        ("etc/group", ""),
        ("etc/ssl/certs/ca-certificates.crt", ""),
        ("lib64/ld-linux-x86-64.so.2", ""),
        ("lib/x86_64-linux-gnu/libc.so.6", ""),
        ("lib/x86_64-linux-gnu/libgcc_s.so.1", ""),
        ("data/", "65532/65532"),
        ("home/nonroot/", "65532/65532"),
    ] {
        assert!(
            has(path, owner),
            "{path} (owner {owner}) not in the image:\n{}",
            listing.join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(out_dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-quota-image-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
