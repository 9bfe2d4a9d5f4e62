//! The app's modules import downwards only, and no two modules import each other, directly or
//! through others. Run with `cargo test --test layers`; it prints every offending import.
//!
//! Layers, top to bottom (a module may use its own layer and those below):
//! 5 `startup` (the composition root) and `bench` (a harness that builds the app, like `main`);
//! 4 `receiver` (HTTP, the only layer that knows axum) and `worker`;
//! 3 `sync`, `ops`, `explain`; 2 `domain`, `providers`; 1 `store`;
//! 0 `db`, `kv`, `config`, `redact`, `telemetry`, `trace` and the crate root.
//!
//! Every file of `src/` is a node (the binary's `main.rs` and `cli/` are outside the library
//! and may use anything). A path `crate::a::b::Item` counts as an import of the deepest module
//! it names, in code and in macro bodies; `#[cfg(test)]` items are left out. A use of an
//! ancestor module is not counted: re-exports make the parent name its children's items.
//! `ISSUESYNC_LAYERS_SRC=<dir>` checks another tree (to see the check fail on an old one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

const LAYERS: &[(&str, u8)] = &[
    ("startup", 5),
    ("bench", 5),
    ("receiver", 4),
    ("worker", 4),
    ("sync", 3),
    ("ops", 3),
    ("explain", 3),
    ("domain", 2),
    ("providers", 2),
    ("store", 1),
    ("db", 0),
    ("kv", 0),
    ("config", 0),
    ("redact", 0),
    ("telemetry", 0),
    ("trace", 0),
];

/// Top-level modules that may name axum.
const HTTP: &[&str] = &["receiver", "startup", "bench"];

fn layer(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`; None for files outside the library's modules.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        None | Some("main" | "lib" | "cli") => None,
        _ => Some(parts.join("::")),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every absolute module path a file names (`a::b::Item` for `crate::a::b::Item`, with
/// `self::` and `super::` resolved against `module`), and whether it names axum.
#[derive(Default)]
struct Names {
    module: Vec<String>,
    paths: Vec<Vec<String>>,
    axum: bool,
}

impl Names {
    fn add(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let abs: Option<Vec<String>> = match first.as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "self" => Some([self.module.clone(), segments[1..].to_vec()].concat()),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                Some([base, rest.to_vec()].concat())
            }
            "axum" => {
                self.axum = true;
                None
            }
            _ => None,
        };
        if let Some(abs) = abs {
            self.paths.push(abs);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.add(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.add(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.add(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// Paths inside macro bodies (`on_tx!`, `tracing::info!`, …), which syn leaves as tokens.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if matches!(id.to_string().as_str(), "crate" | "axum") => {
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (trees.get(j), trees.get(j + 1))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        match trees.get(j + 2) {
                            Some(TokenTree::Ident(next)) => segments.push(next.to_string()),
                            _ => break,
                        }
                        j += 3;
                    }
                    self.add(&segments);
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().contains("test"))
    })
}

impl<'ast> Visit<'ast> for Names {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Impl(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_cfg_test(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.add(&segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.tokens(m.tokens.clone());
    }
}

/// The deepest module of `modules` that `path` names.
fn resolve(modules: &BTreeSet<String>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The modules on a cycle, each cycle once (Tarjan's strongly connected components).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.found.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn modules_import_downwards_and_without_cycles() {
    let src = std::env::var_os("ISSUESYNC_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let named: Vec<(String, Names)> = files
        .iter()
        .filter_map(|f| {
            let module = module_of(&src, f)?;
            let text = std::fs::read_to_string(f).expect("read a source file");
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let mut names = Names {
                module: module.split("::").map(String::from).collect(),
                ..Names::default()
            };
            names.visit_file(&ast);
            Some((module, names))
        })
        .collect();
    let modules: BTreeSet<String> = named.iter().map(|(m, _)| m.clone()).collect();
    assert!(
        modules.contains("sync::inbound") && modules.contains("receiver"),
        "the check found no modules under {}",
        src.display()
    );

    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, names) in &named {
        let edges = graph.entry(module.clone()).or_default();
        for path in &names.paths {
            let Some(target) = resolve(&modules, path) else {
                continue;
            };
            let ancestor = module.starts_with(&format!("{target}::"));
            if target == *module || ancestor {
                continue;
            }
            edges.insert(target.clone());
            let (from, to) = (top(module), top(&target));
            match (layer(from), layer(to)) {
                (Some(a), Some(b)) if b > a => problems.push(format!(
                    "{module} (layer {a}) imports {target} (layer {b}), which is above it"
                )),
                (None, _) => problems.push(format!("{module}: module {from} has no layer")),
                (_, None) => problems.push(format!("{target}: module {to} has no layer")),
                _ => {}
            }
        }
        if names.axum && !HTTP.contains(&top(module)) {
            problems.push(format!(
                "{module} uses axum, which only the HTTP layer knows"
            ));
        }
    }
    for cycle in cycles(&graph) {
        problems.push(format!("import cycle: {}", cycle.join(" <-> ")));
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} layering problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
