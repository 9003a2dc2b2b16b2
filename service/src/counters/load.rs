//! Filling the store from the database at startup, a page at a time.

use super::*;

/// Fills a [`CounterStore`] from the database at startup, a page of nodes
/// at a time: entries go in as their page arrives (while the next pages
/// are read), the children lists and reservations, which need every
/// parent in, at [`Loading::finish`].
#[derive(Debug)]
pub struct Loading {
    store: Arc<CounterStore>,
    reservations: Vec<Reservation>,
    /// (child, parent) of every live child, for the parents' rollups.
    children: Vec<(Box<str>, Box<str>)>,
    /// The version every loaded entry gets.
    version: u64,
}

// === impl CounterStore: loading ===

impl CounterStore {
    /// Fills the store from the database (startup only), all nodes at once
    /// (see [`Loading`] for a page at a time).
    pub fn load(self: &Arc<Self>, nodes: impl IntoIterator<Item = LoadedNode>) {
        let mut loading = self.loading();
        loading.add(nodes);
        loading.finish();
    }

    /// Fills the store a page of nodes at a time (see [`Loading`]).
    pub fn loading(self: &Arc<Self>) -> Loading {
        Loading {
            store: self.clone(),
            reservations: Vec::new(),
            children: Vec::new(),
            version: self.next_version(),
        }
    }
}

// === impl Loading ===

impl Loading {
    /// Puts a page of loaded nodes in, noting what each live child
    /// reserves from its parent.
    pub fn add(&mut self, nodes: impl IntoIterator<Item = LoadedNode>) {
        for n in nodes {
            if let (Some(parent), false) = (&n.node.parent, n.node.state == NodeState::Deleted) {
                let wants = n
                    .node
                    .resources
                    .iter()
                    .map(|r| (r.name.clone(), r.max))
                    .collect();
                self.reservations
                    .push((parent.clone(), n.id.as_str().into(), wants));
                self.children.push((n.id.as_str().into(), parent.clone()));
            }
            self.store.nodes.insert(
                n.id.into_boxed_str(),
                Box::new(Entry {
                    node: n.node,
                    extras: extras(n.claims, n.grants),
                    dirty: false,
                    unsaved: false,
                    version: self.version,
                }),
            );
        }
    }

    /// Derives the children lists and reservations from the parents the
    /// loaded nodes named, once every node is in.
    pub fn finish(self) {
        let store = self.store;
        for (parent, child, wants) in self.reservations {
            if let Some(mut p) = store.nodes.get_mut(&*parent) {
                p.node.add_child(&child);
                for (resource, max) in wants {
                    if let Some(r) = p.node.resources.iter_mut().find(|r| r.name == resource) {
                        r.allocated = r.allocated.saturating_add(max);
                    }
                }
            }
        }
        // Parents' rollups from every child's share, parents before their
        // children: a child's whole share goes up while its own rollups are
        // still empty, and what its children add later goes up as the
        // change it makes (sent after them, it would be counted twice).
        let now = store.now();
        let children = self.children;
        let mut order: Vec<(usize, usize)> = {
            let parent_of: HashMap<&str, &str> =
                children.iter().map(|(c, p)| (&**c, &**p)).collect();
            children
                .iter()
                .enumerate()
                .map(|(i, (c, _))| {
                    let (mut id, mut d) = (&**c, 0usize);
                    while let Some(p) = parent_of.get(id)
                        && d <= 1_000
                    {
                        (id, d) = (p, d + 1);
                    }
                    (d, i)
                })
                .collect()
        };
        order.sort_unstable();
        for (child, parent) in order.into_iter().map(|(_, i)| &children[i]) {
            let shares = match store.nodes.get(child) {
                Some(e) => e.node.shares(now, store.auto_reset),
                None => continue,
            };
            let deltas = node::share_deltas(&[], &shares);
            store.propagate(parent, deltas, now);
        }
        let limit = Changed::limit_for(store.nodes.len());
        lock(&store.changed).limit = limit;
    }
}

impl NodeSink for Loading {
    fn take(&mut self, page: Vec<LoadedNode>) {
        self.add(page);
    }
}
