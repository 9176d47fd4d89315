//! A set of u64 sequence numbers stored as sorted, disjoint, half-open ranges.
//!
//! Sequences are produced and (normally) delivered in order, so the set is a handful of ranges
//! however many records it holds, and a corrupt sequence number cannot make it allocate a
//! giant bitmap.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqSet {
    /// Sorted, non-overlapping, non-adjacent `[start, end)` ranges.
    ranges: Vec<(u64, u64)>,
    len: u64,
}

impl SeqSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Elements in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end <= seq);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= seq)
    }

    /// Adds one sequence; false when it was already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        // In-order arrival extends the last range: the common case, O(1).
        if let Some(last) = self.ranges.last_mut() {
            if last.1 == seq {
                last.1 += 1;
                self.len += 1;
                return true;
            }
        }
        if self.contains(seq) {
            return false;
        }
        self.insert_range(seq, seq + 1);
        true
    }

    /// Adds `[start, end)`, merging with overlapping or adjacent ranges.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some(last) = self.ranges.last_mut() {
            if last.1 == start {
                last.1 = end;
                self.len += end - start;
                return;
            }
        }
        // First range that ends at or after `start` (adjacent counts) and last that begins at
        // or before `end`: everything between merges.
        let lo = self.ranges.partition_point(|&(_, e)| e < start);
        let hi = self.ranges.partition_point(|&(s, _)| s <= end);
        let (mut new_start, mut new_end) = (start, end);
        let mut removed = 0;
        for &(s, e) in &self.ranges[lo..hi] {
            new_start = new_start.min(s);
            new_end = new_end.max(e);
            removed += e - s;
        }
        self.ranges.splice(lo..hi, [(new_start, new_end)]);
        self.len = self.len - removed + (new_end - new_start);
    }

    /// How many of `[start, end)` are in the set.
    pub fn count_in(&self, start: u64, end: u64) -> u64 {
        let first = self.ranges.partition_point(|&(_, e)| e <= start);
        self.ranges[first..].iter().take_while(|&&(s, _)| s < end).map(|&(s, e)| e.min(end) - s.max(start)).sum()
    }

    /// The sub-ranges of `[start, end)` that are missing from the set.
    pub fn gaps_in(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = start;
        let first = self.ranges.partition_point(|&(_, e)| e <= start);
        for &(s, e) in self.ranges[first..].iter().take_while(|&&(s, _)| s < end) {
            if s > at {
                gaps.push((at, s));
            }
            at = at.max(e);
        }
        if at < end {
            gaps.push((at, end));
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_inserts_make_one_range() {
        let mut s = SeqSet::new();
        for i in 0..1000 {
            assert!(s.insert(i));
        }
        assert_eq!(s.ranges(), &[(0, 1000)]);
        assert_eq!(s.len(), 1000);
        assert!(!s.insert(500));
        assert!(s.contains(999) && !s.contains(1000));
    }

    #[test]
    fn out_of_order_inserts_merge() {
        let mut s = SeqSet::new();
        for i in [5, 3, 4, 10, 0, 1, 2, 11, 9] {
            assert!(s.insert(i), "{i}");
        }
        assert_eq!(s.ranges(), &[(0, 6), (9, 12)]);
        assert_eq!(s.len(), 9);
        assert!(!s.insert(3));
        s.insert_range(4, 10);
        assert_eq!(s.ranges(), &[(0, 12)]);
        assert_eq!(s.len(), 12);
        s.insert_range(20, 30);
        s.insert_range(15, 25);
        assert_eq!(s.ranges(), &[(0, 12), (15, 30)]);
        assert_eq!(s.len(), 27);
    }

    #[test]
    fn counting_and_gaps() {
        let mut s = SeqSet::new();
        s.insert_range(0, 10);
        s.insert_range(20, 30);
        assert_eq!(s.count_in(0, 30), 20);
        assert_eq!(s.count_in(5, 25), 10);
        assert_eq!(s.count_in(10, 20), 0);
        assert_eq!(s.count_in(40, 50), 0);
        assert_eq!(s.gaps_in(5, 35), vec![(10, 20), (30, 35)]);
        assert_eq!(s.gaps_in(0, 10), vec![]);
        assert_eq!(SeqSet::new().gaps_in(3, 7), vec![(3, 7)]);
    }
}
