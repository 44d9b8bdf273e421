//! Tag-list pagination as Docker Hub and GHCR do it (`n`, `last`, `Link: <...>; rel="next"`), which the Debian
//! registry (distribution 2.8) lacks: it ignores `n` and lists tags unsorted. The `paginate` server of
//! `testenv-server` applies this in front of a registry.

/// One page of a lexically sorted tag list: the tags after `last` (all if `None`), at most `n`, and the last
/// tag of the page when more follow (the `last` of the next page).
pub fn page(mut tags: Vec<String>, n: usize, last: Option<&str>) -> (Vec<String>, Option<String>) {
    tags.sort();
    let start = last.map_or(0, |l| tags.partition_point(|t| t.as_str() <= l));
    let rest = tags.split_off(start.min(tags.len()));
    let more = rest.len() > n;
    let page: Vec<String> = rest.into_iter().take(n).collect();
    let next = if more { page.last().cloned() } else { None };
    (page, next)
}

/// The `Link` header value pointing at the page after `last` of `repo`'s tags.
pub fn next_link(repo: &str, last: &str, n: usize) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(n: usize) -> Vec<String> {
        (0..n).rev().map(|i| format!("t{i:02}")).collect()
    }

    #[test]
    fn pages_cover_every_tag_once_in_order() {
        let mut last = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (p, next) = page(tags(23), 5, last.as_deref());
            seen.extend(p);
            pages += 1;
            match next {
                Some(n) => last = Some(n),
                None => break,
            }
        }
        assert_eq!(pages, 5);
        let mut want = tags(23);
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn exact_multiple_has_no_empty_last_page() {
        let (p, next) = page(tags(10), 5, Some("t04"));
        assert_eq!(p.len(), 5);
        assert_eq!(next, None);
    }

    #[test]
    fn last_beyond_the_end_gives_an_empty_page() {
        assert_eq!(page(tags(3), 5, Some("zzz")), (vec![], None));
    }

    #[test]
    fn link_escapes_the_tag() {
        assert_eq!(
            next_link("a/b", "1.0+x", 2),
            "</v2/a/b/tags/list?n=2&last=1.0%2Bx>; rel=\"next\""
        );
    }
}
