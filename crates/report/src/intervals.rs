//! Interval arithmetic on the target clock (milliseconds): when a back end with several machines
//! is unavailable (all of them out at once), and the part of an unavailability beyond 30 minutes.

use sfbpatch_engine::Millis;

/// `[start, end)`, `start < end`. `open`: it had not ended by the last journal record, and
/// `end` is that record's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub start: Millis,
    pub end: Millis,
    pub open: bool,
}

impl Window {
    /// `None` for an empty window.
    pub fn new(start: Millis, end: Millis, open: bool) -> Option<Self> {
        (start < end).then_some(Window { start, end, open })
    }

    pub fn len(&self) -> Millis {
        self.end - self.start
    }
}

/// Sorts and joins windows that overlap or touch: a machine leaving service at the instant
/// another came back leaves no gap.
pub(crate) fn merge(mut windows: Vec<Window>) -> Vec<Window> {
    windows.sort_by_key(|w| (w.start, w.end));
    let mut out: Vec<Window> = Vec::with_capacity(windows.len());
    for w in windows {
        match out.last_mut() {
            Some(last) if w.start <= last.end => {
                if w.end > last.end || (w.end == last.end && w.open) {
                    last.end = w.end;
                    last.open = w.open;
                }
            }
            _ => out.push(w),
        }
    }
    out
}

/// The times inside both lists (each sorted and disjoint, as [`merge`] leaves them).
pub(crate) fn intersect(a: &[Window], b: &[Window]) -> Vec<Window> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        let start = x.start.max(y.start);
        let (end, open) = match x.end.cmp(&y.end) {
            std::cmp::Ordering::Less => (x.end, x.open),
            std::cmp::Ordering::Greater => (y.end, y.open),
            std::cmp::Ordering::Equal => (x.end, x.open && y.open),
        };
        if let Some(w) = Window::new(start, end, open) {
            out.push(w);
        }
        if x.end <= y.end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The times when all of the machines were out at once. `None` in `machines` stands for a
/// machine the journal knows nothing of: it stayed in service.
pub(crate) fn all_out(machines: &[Option<&[Window]>]) -> Vec<Window> {
    let mut iter = machines.iter();
    let Some(first) = iter.next() else {
        return Vec::new();
    };
    let mut acc: Vec<Window> = first.map(|w| merge(w.to_vec())).unwrap_or_default();
    for m in iter {
        if acc.is_empty() {
            break;
        }
        let other = m.map(|w| merge(w.to_vec())).unwrap_or_default();
        acc = intersect(&acc, &other);
    }
    merge(acc)
}

/// The part of each window beyond `limit` from its start.
pub(crate) fn beyond(windows: &[Window], limit: Millis) -> Vec<Window> {
    windows
        .iter()
        .filter_map(|w| Window::new(w.start.saturating_add(limit), w.end, w.open))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: Millis, end: Millis) -> Window {
        Window::new(start, end, false).unwrap()
    }

    #[test]
    fn merge_joins_touching_and_overlapping() {
        assert_eq!(
            merge(vec![w(10, 20), w(0, 10), w(15, 30), w(40, 50)]),
            vec![w(0, 30), w(40, 50)]
        );
        let open = Window::new(40, 60, true).unwrap();
        assert_eq!(merge(vec![w(40, 60), open]), vec![open]);
    }

    #[test]
    fn intersect_keeps_common_time_only() {
        assert_eq!(
            intersect(&[w(0, 10), w(20, 40)], &[w(5, 25), w(30, 35)]),
            vec![w(5, 10), w(20, 25), w(30, 35)]
        );
        // Back to back: nothing in common.
        assert!(intersect(&[w(0, 10)], &[w(10, 20)]).is_empty());
    }

    #[test]
    fn open_only_when_every_machine_is_still_out() {
        let a = Window::new(0, 100, true).unwrap();
        let b = Window::new(50, 100, false).unwrap();
        assert_eq!(all_out(&[Some(&[a]), Some(&[b])]), vec![b]);
        let b = Window::new(50, 100, true).unwrap();
        assert_eq!(all_out(&[Some(&[a]), Some(&[b])]), vec![b]);
    }

    #[test]
    fn a_machine_without_outage_keeps_the_back_end_available() {
        assert!(all_out(&[Some(&[w(0, 10)]), None]).is_empty());
        assert!(all_out(&[]).is_empty());
    }

    #[test]
    fn beyond_the_limit() {
        assert_eq!(beyond(&[w(0, 10), w(20, 45)], 20), vec![w(40, 45)]);
        assert!(beyond(&[w(0, 20)], 20).is_empty());
    }
}
