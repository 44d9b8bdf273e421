//! Finding marked scalars with tree-sitter-yaml, which gives exact byte spans of scalars and
//! comments (`dependencies.md` §5), and reading the document's object identity.

use std::cell::RefCell;

use tree_sitter::{Node, Parser, Tree};

use crate::ObjectId;
use crate::marker;
use crate::scalar::{self, Style};

/// A scalar carrying a marker comment.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// Byte range of the scalar's source text (quotes included) within the document.
    pub start: usize,
    pub end: usize,
    pub style: Style,
    /// Inside a flow collection, where `,[]{}` would end a plain scalar.
    pub in_flow: bool,
    /// The scalar's current value.
    pub old: String,
    /// The setter the marker names.
    pub setter: String,
    /// 0-based row of the marker comment within the document.
    pub row: usize,
}

/// The marked scalars of one document and its identity.
#[derive(Debug, Default)]
pub(crate) struct Located {
    pub sites: Vec<Site>,
    pub object: ObjectId,
}

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

fn parse(text: &str) -> Result<Tree, String> {
    PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut p = Parser::new();
            p.set_language(&tree_sitter_yaml::LANGUAGE.into())
                .map_err(|e| format!("loading the YAML grammar: {e}"))?;
            *slot = Some(p);
        }
        let parser = slot
            .as_mut()
            .ok_or_else(|| "YAML parser unavailable".to_owned())?;
        parser
            .parse(text, None)
            .ok_or_else(|| "YAML parser gave no tree".to_owned())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar(Style),
    Comment,
    Other,
}

fn flow_style(kind: &str) -> Option<Style> {
    match kind {
        "plain_scalar" => Some(Style::Plain),
        "single_quote_scalar" => Some(Style::Single),
        "double_quote_scalar" => Some(Style::Double),
        _ => None,
    }
}

/// Leaves in source order; scalars, comments, anchors, tags and aliases are single tokens.
fn tokens(tree: &Tree) -> Vec<(Node<'_>, Kind)> {
    let mut out = Vec::new();
    let mut cursor = tree.walk();
    'outer: loop {
        let node = cursor.node();
        let kind = node.kind();
        let atomic = match kind {
            "comment" => Some(Kind::Comment),
            "anchor" | "tag" | "alias" | "block_scalar" => Some(Kind::Other),
            k => flow_style(k).map(Kind::Scalar),
        };
        let descend = match atomic {
            Some(k) => {
                out.push((node, k));
                false
            }
            None if node.child_count() == 0 => {
                out.push((node, Kind::Other));
                false
            }
            None => true,
        };
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                continue 'outer;
            }
            if !cursor.goto_parent() {
                break 'outer;
            }
        }
    }
    out
}

fn first_error(node: Node<'_>) -> Option<Node<'_>> {
    if node.is_error() || node.is_missing() {
        return Some(node);
    }
    let mut cursor = node.walk();
    let children: Vec<_> = node.children(&mut cursor).collect();
    children
        .into_iter()
        .filter(|c| c.has_error())
        .find_map(first_error)
}

/// Finds the marked scalars of a document (or any YAML text) and its object identity.
pub(crate) fn locate(text: &str) -> Result<Located, String> {
    let tree = parse(text)?;
    let root = tree.root_node();
    if root.has_error() {
        let at = first_error(root).unwrap_or(root).start_position();
        return Err(format!(
            "YAML syntax error at line {} column {}",
            at.row + 1,
            at.column + 1
        ));
    }
    let toks = tokens(&tree);
    let row = |n: Node<'_>| n.start_position().row;
    let end_row = |n: Node<'_>| n.end_position().row;
    // For each scalar token index: its line comment, else its head comment (§3.5 step 1).
    let mut line_comment: Vec<Option<usize>> = vec![None; toks.len()];
    let mut head_comment: Vec<Option<usize>> = vec![None; toks.len()];
    for (i, &(c, kind)) in toks.iter().enumerate() {
        if kind != Kind::Comment {
            continue;
        }
        let prev = i.checked_sub(1).map(|p| toks[p]);
        match prev {
            Some((p, Kind::Scalar(_))) if end_row(p) == row(c) => {
                line_comment[i - 1] = Some(i);
                continue;
            }
            // `item, # comment` in a flow collection: the comment belongs to the item.
            Some((p, Kind::Other)) if p.kind() == "," && end_row(p) == row(c) => {
                if let Some((s, Kind::Scalar(_))) = i.checked_sub(2).map(|q| toks[q])
                    && end_row(s) == row(c)
                {
                    line_comment[i - 2] = Some(i);
                }
                continue;
            }
            Some((p, _)) if end_row(p) == row(c) => continue,
            _ => {}
        }
        // An own-line comment: a single-line head comment of the block sequence item below.
        // Own-line comments on consecutive lines form one multi-line head comment, which is
        // never a marker; a line comment of the previous line is not part of it.
        let own_line = |k: usize| k == 0 || end_row(toks[k - 1].0) < row(toks[k].0);
        if prev
            .is_some_and(|(p, k)| k == Kind::Comment && end_row(p) + 1 == row(c) && own_line(i - 1))
        {
            continue;
        }
        let Some(&(dash, _)) = toks.get(i + 1) else {
            continue;
        };
        if dash.kind() != "-" || row(dash) != row(c) + 1 {
            continue;
        }
        let Some(item) = dash.parent().filter(|p| p.kind() == "block_sequence_item") else {
            continue;
        };
        let Some(target) = item.named_child(0).and_then(scalar_in) else {
            continue;
        };
        if let Some(j) = (i + 2..toks.len())
            .take_while(|&j| toks[j].0.start_byte() <= target.start_byte())
            .find(|&j| toks[j].0.id() == target.id())
        {
            head_comment[j] = Some(i);
        }
    }
    let mut located = Located {
        sites: Vec::new(),
        object: object_id(root, text),
    };
    for (j, &(node, kind)) in toks.iter().enumerate() {
        let Kind::Scalar(style) = kind else { continue };
        let Some(ci) = line_comment[j].or(head_comment[j]) else {
            continue;
        };
        let comment = toks[ci].0;
        let Some(setter) = marker::setter_name(&text[comment.byte_range()]) else {
            continue;
        };
        if !is_settable_position(node) {
            continue;
        }
        let line = row(comment) + 1;
        if let Some(tag) = explicit_tag(node, text)
            && tag != "!!str"
            && tag != "!"
        {
            return Err(format!(
                "line {line}: marked value has the explicit tag {tag}; refusing to change it"
            ));
        }
        let raw = &text[node.byte_range()];
        let old = scalar::decode(style, raw)
            .ok_or_else(|| format!("line {line}: cannot read the marked value {raw:?}"))?;
        located.sites.push(Site {
            start: node.start_byte(),
            end: node.end_byte(),
            style,
            in_flow: in_flow(node),
            old,
            setter,
            row: row(comment),
        });
    }
    Ok(located)
}

/// The flow scalar held by a `flow_node` (after any anchor and tag).
fn scalar_in(node: Node<'_>) -> Option<Node<'_>> {
    if node.kind() != "flow_node" {
        return None;
    }
    let last = node.named_child(node.named_child_count().checked_sub(1)?)?;
    flow_style(last.kind()).map(|_| last)
}

/// Only mapping values and sequence items are set, never keys (§3.5).
fn is_settable_position(scalar: Node<'_>) -> bool {
    let Some(flow_node) = scalar.parent() else {
        return false;
    };
    let Some(parent) = flow_node.parent() else {
        return false;
    };
    match parent.kind() {
        "block_mapping_pair" | "flow_pair" => parent
            .child_by_field_name("value")
            .is_some_and(|v| v.id() == flow_node.id()),
        "block_sequence_item" | "flow_sequence" => true,
        _ => false,
    }
}

fn explicit_tag<'t>(scalar: Node<'_>, text: &'t str) -> Option<&'t str> {
    let flow_node = scalar.parent()?;
    let mut cursor = flow_node.walk();
    let tag = flow_node
        .children(&mut cursor)
        .find(|c| c.kind() == "tag")?;
    Some(&text[tag.byte_range()])
}

fn in_flow(node: Node<'_>) -> bool {
    let mut cur = node.parent();
    while let Some(n) = cur {
        match n.kind() {
            "flow_mapping" | "flow_sequence" => return true,
            "block_node" | "document" => return false,
            _ => cur = n.parent(),
        }
    }
    false
}

/// `{apiVersion, kind, metadata.name, metadata.namespace}` of the first document in `root`.
fn object_id(root: Node<'_>, text: &str) -> ObjectId {
    let mut id = ObjectId::default();
    let mut cursor = root.walk();
    let Some(doc) = root.children(&mut cursor).find(|n| n.kind() == "document") else {
        return id;
    };
    let mut cursor = doc.walk();
    let Some(top) = doc
        .named_children(&mut cursor)
        .find(|n| matches!(n.kind(), "block_node" | "flow_node"))
    else {
        return id;
    };
    for (key, value) in pairs(top) {
        match scalar_text(key, text).as_deref() {
            Some("apiVersion") => id.api_version = scalar_text(value, text).unwrap_or_default(),
            Some("kind") => id.kind = scalar_text(value, text).unwrap_or_default(),
            Some("metadata") => {
                for (k, v) in pairs(value) {
                    match scalar_text(k, text).as_deref() {
                        Some("name") => id.name = scalar_text(v, text).unwrap_or_default(),
                        Some("namespace") => {
                            id.namespace = scalar_text(v, text).unwrap_or_default()
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    id
}

/// Key/value nodes of the mapping held by a `block_node` or `flow_node`.
fn pairs(node: Node<'_>) -> Vec<(Node<'_>, Node<'_>)> {
    let mut cursor = node.walk();
    let Some(map) = node
        .named_children(&mut cursor)
        .find(|n| matches!(n.kind(), "block_mapping" | "flow_mapping"))
    else {
        return Vec::new();
    };
    let mut cursor = map.walk();
    map.named_children(&mut cursor)
        .filter(|p| matches!(p.kind(), "block_mapping_pair" | "flow_pair"))
        .filter_map(|p| {
            Some((
                p.child_by_field_name("key")?,
                p.child_by_field_name("value")?,
            ))
        })
        .collect()
}

fn scalar_text(node: Node<'_>, text: &str) -> Option<String> {
    let s = scalar_in(node)?;
    scalar::decode(flow_style(s.kind())?, &text[s.byte_range()])
}
