//! A suffix array over the training token stream: the longest earlier
//! occurrence of the context's tail, and what followed it.
//!
//! The array is built over the stream *read backwards*. A query extends the
//! context one token further into the past at a time (its last token first,
//! then the one before, ...), and each extension only narrows the current
//! range of the array by two binary searches on one token, so the longest
//! match is found in `O(match length × log n)` with no string comparisons.
//! Reading the stream backwards, the token that *followed* an occurrence in
//! the forward stream is the one just before the suffix's start.
//!
//! Construction is SA-IS (Nong, Zhang and Chan, 2009): linear time, an
//! integer alphabet of any size, about one second per ten million tokens on
//! one core.

/// Longest match looked for, in tokens.
pub const MAX_MATCH: usize = 64;
/// Largest number of occurrences whose followers are counted; beyond it the
/// followers of `FOLLOWER_CAP` occurrences evenly spaced through the range
/// are counted (the range is ordered by the tokens before the match, so the
/// sample spreads over the different longer contexts).
pub const FOLLOWER_CAP: usize = 256;

const EMPTY: u32 = u32::MAX;

/// The training stream and the suffix array of its reversal.
#[derive(Clone, Debug)]
pub struct SuffixIndex {
    tokens: Vec<u32>,
    /// `sa[k] = j`: the k-th smallest suffix of the reversed stream starts at
    /// reversed position `j`, i.e. reads `tokens[n-1-j], tokens[n-2-j], ...`.
    sa: Vec<u32>,
    /// `starts[t]..starts[t + 1]`: the range of suffixes that begin with
    /// token `t` (the first step of every match, without a search).
    starts: Vec<u32>,
}

/// The longest match of a context's tail: its length in tokens (0 = none)
/// and its range `lo..hi` of the suffix array. Every occurrence in the range
/// except possibly one (the one ending at the stream's last token) has a
/// following token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub len: usize,
    pub lo: usize,
    pub hi: usize,
}

impl Match {
    /// No match.
    pub const NONE: Match = Match {
        len: 0,
        lo: 0,
        hi: 0,
    };
}

/// What followed the occurrences of a match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Followers {
    /// `(token, count)`, sorted by token.
    pub counts: Vec<(u32, u32)>,
    /// Sum of the counts.
    pub total: u32,
    /// Occurrences with a following token (all of them, counted or not).
    pub occurrences: usize,
    /// Whether only a sample of `FOLLOWER_CAP` occurrences was counted.
    pub sampled: bool,
}

impl Followers {
    /// Count of `token` among the followers.
    pub fn count(&self, token: u32) -> u32 {
        match self.counts.binary_search_by_key(&token, |&(t, _)| t) {
            Ok(i) => self.counts[i].1,
            Err(_) => 0,
        }
    }
}

impl SuffixIndex {
    /// Builds the index. `vocab_size` bounds the token ids (every id must be
    /// below it).
    ///
    /// # Panics
    /// When a token id is not below `vocab_size`, or the stream has
    /// `u32::MAX - 1` tokens or more.
    pub fn build(tokens: Vec<u32>, vocab_size: usize) -> SuffixIndex {
        let n = tokens.len();
        assert!(
            (n as u64) < u32::MAX as u64 - 1,
            "a memory holds fewer than 2^32 - 2 tokens"
        );
        // Reversed, shifted by one, with the unique smallest sentinel 0.
        let mut text = Vec::with_capacity(n + 1);
        for &t in tokens.iter().rev() {
            assert!(
                (t as usize) < vocab_size,
                "token {t} is outside the vocabulary of {vocab_size}"
            );
            text.push(t + 1);
        }
        text.push(0);
        let mut sa = vec![0u32; n + 1];
        sais(&text, &mut sa, vocab_size + 1);
        drop(text);
        // sa[0] is the sentinel.
        sa.remove(0);
        let mut starts = vec![0u32; vocab_size + 1];
        for &t in &tokens {
            starts[t as usize + 1] += 1;
        }
        for t in 0..vocab_size {
            starts[t + 1] += starts[t];
        }
        SuffixIndex { tokens, sa, starts }
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The suffix array (of the reversed stream).
    pub fn suffix_array(&self) -> &[u32] {
        &self.sa
    }

    /// Reversed-stream token at reversed position `j + depth`, shifted by
    /// one, or 0 past the start of the forward stream.
    #[inline]
    fn key(&self, j: u32, depth: usize) -> u32 {
        let n = self.tokens.len();
        let at = j as usize + depth;
        if at < n {
            self.tokens[n - 1 - at] + 1
        } else {
            0
        }
    }

    /// Whether the range holds an occurrence with a following token: every
    /// one but the occurrence at reversed position 0 has one.
    #[inline]
    fn has_follower(&self, lo: usize, hi: usize) -> bool {
        hi - lo >= 2 || (hi - lo == 1 && self.sa[lo] != 0)
    }

    /// The longest tail of `context`, at most `max_len` tokens, that occurs
    /// in the stream followed by at least one token. Shorter matches are the
    /// backoff: a tail that matches with a follower has all its own tails
    /// matching too. When scoring a stream, the match at the next position
    /// is at most one longer than this one, so `max_len` can be the previous
    /// length plus one.
    pub fn longest_match(&self, context: &[u32], max_len: usize) -> Match {
        let limit = max_len.min(context.len());
        let (mut lo, mut hi) = match context.last() {
            Some(&t) if limit > 0 && (t as usize) + 1 < self.starts.len() => {
                let (a, b) = (
                    self.starts[t as usize] as usize,
                    self.starts[t as usize + 1] as usize,
                );
                if a == b || !self.has_follower(a, b) {
                    return Match::NONE;
                }
                (a, b)
            }
            _ => return Match::NONE,
        };
        let mut len = 1usize;
        while len < limit {
            if hi - lo == 1 {
                // One occurrence left (with a follower, or the range would
                // not have been kept): extend by reading it directly.
                let j = self.sa[lo];
                while len < limit && self.key(j, len) == context[context.len() - 1 - len] + 1 {
                    len += 1;
                }
                break;
            }
            let c = context[context.len() - 1 - len] + 1;
            // The range is sorted at this depth: when both ends continue
            // with `c`, all of it does (the common case inside a long
            // repeat), and no search is needed.
            if self.key(self.sa[lo], len) == c && self.key(self.sa[hi - 1], len) == c {
                len += 1;
                continue;
            }
            let range = &self.sa[lo..hi];
            let a = range.partition_point(|&j| self.key(j, len) < c);
            let b = a + range[a..].partition_point(|&j| self.key(j, len) <= c);
            if a == b || !self.has_follower(lo + a, lo + b) {
                break;
            }
            hi = lo + b;
            lo += a;
            len += 1;
        }
        Match { len, lo, hi }
    }

    /// The tokens that followed the match's occurrences, counting at most
    /// `cap` occurrences (evenly spaced through the range when there are
    /// more).
    pub fn followers(&self, m: &Match, cap: usize) -> Followers {
        if m.len == 0 {
            return Followers::default();
        }
        let n = self.tokens.len();
        let mut next = Vec::new();
        let follower = |k: usize| -> Option<u32> {
            // Reversed position j ends the occurrence at forward n-1-j; the
            // follower is forward n-j.
            let j = self.sa[k] as usize;
            (j > 0).then(|| self.tokens[n - j])
        };
        let size = m.hi - m.lo;
        let cap = cap.max(1);
        let sampled = size > cap;
        if sampled {
            for i in 0..cap {
                next.extend(follower(m.lo + i * size / cap));
            }
        } else {
            next.extend((m.lo..m.hi).filter_map(follower));
        }
        let occurrences = size - usize::from(self.ends_stream(m));
        next.sort_unstable();
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for t in next {
            match counts.last_mut() {
                Some((last, c)) if *last == t => *c += 1,
                _ => counts.push((t, 1)),
            }
        }
        let total = counts.iter().map(|&(_, c)| c).sum();
        Followers {
            counts,
            total,
            occurrences,
            sampled,
        }
    }

    /// Whether the match also occurs at the very end of the stream (with no
    /// follower there): the stream's tail spells it like any occurrence in
    /// the range does.
    fn ends_stream(&self, m: &Match) -> bool {
        let j = self.sa[m.lo];
        (0..m.len).all(|d| self.key(0, d) == self.key(j, d))
    }
}

/// SA-IS. `s` ends with a unique smallest symbol 0; every symbol is below
/// `k`. Writes the suffix array of `s` into `sa` (same length).
fn sais(s: &[u32], sa: &mut [u32], k: usize) {
    let n = s.len();
    debug_assert_eq!(sa.len(), n);
    if n == 1 {
        sa[0] = 0;
        return;
    }
    // S-type (true) or L-type (false) suffixes.
    let mut stype = vec![false; n];
    stype[n - 1] = true;
    for i in (0..n - 1).rev() {
        stype[i] = s[i] < s[i + 1] || (s[i] == s[i + 1] && stype[i + 1]);
    }
    let is_lms = |i: usize| i > 0 && stype[i] && !stype[i - 1];

    let mut counts = vec![0u32; k];
    for &c in s {
        counts[c as usize] += 1;
    }
    let mut bkt = vec![0u32; k];
    let bucket_ends = |bkt: &mut [u32]| {
        let mut sum = 0u32;
        for (b, &c) in bkt.iter_mut().zip(&counts) {
            sum += c;
            *b = sum;
        }
    };
    let bucket_starts = |bkt: &mut [u32]| {
        let mut sum = 0u32;
        for (b, &c) in bkt.iter_mut().zip(&counts) {
            *b = sum;
            sum += c;
        }
    };
    let induce = |sa: &mut [u32], bkt: &mut [u32]| {
        bucket_starts(bkt);
        for i in 0..n {
            let j = sa[i];
            if j != EMPTY && j > 0 && !stype[j as usize - 1] {
                let c = s[j as usize - 1] as usize;
                sa[bkt[c] as usize] = j - 1;
                bkt[c] += 1;
            }
        }
        bucket_ends(bkt);
        for i in (0..n).rev() {
            let j = sa[i];
            if j != EMPTY && j > 0 && stype[j as usize - 1] {
                let c = s[j as usize - 1] as usize;
                bkt[c] -= 1;
                sa[bkt[c] as usize] = j - 1;
            }
        }
    };

    // Stage 1: sort the LMS substrings.
    sa.fill(EMPTY);
    bucket_ends(&mut bkt);
    for (i, &c) in s.iter().enumerate().skip(1) {
        if is_lms(i) {
            let c = c as usize;
            bkt[c] -= 1;
            sa[bkt[c] as usize] = i as u32;
        }
    }
    induce(sa, &mut bkt);

    // Compact the sorted LMS positions into the front.
    let mut n1 = 0usize;
    for i in 0..n {
        let j = sa[i];
        if is_lms(j as usize) {
            sa[n1] = j;
            n1 += 1;
        }
    }
    // Name the LMS substrings (equal substrings share a name).
    sa[n1..].fill(EMPTY);
    let mut name = 0u32;
    let mut prev: Option<usize> = None;
    for i in 0..n1 {
        let pos = sa[i] as usize;
        let mut diff = false;
        match prev {
            None => diff = true,
            Some(p) => {
                for d in 0..n {
                    if s[pos + d] != s[p + d] || stype[pos + d] != stype[p + d] {
                        diff = true;
                        break;
                    }
                    if d > 0 && (is_lms(pos + d) || is_lms(p + d)) {
                        break;
                    }
                }
            }
        }
        if diff {
            name += 1;
            prev = Some(pos);
        }
        sa[n1 + pos / 2] = name - 1;
    }
    let mut j = n;
    for i in (n1..n).rev() {
        if sa[i] != EMPTY {
            j -= 1;
            sa[j] = sa[i];
        }
    }

    // Stage 2: sort the reduced string (recursively when names repeat).
    {
        let (head, tail) = sa.split_at_mut(n - n1);
        let s1 = &*tail;
        let sa1 = &mut head[..n1];
        if (name as usize) < n1 {
            sais(s1, sa1, name as usize);
        } else {
            for (i, &c) in s1.iter().enumerate() {
                sa1[c as usize] = i as u32;
            }
        }
    }

    // Stage 3: induce the full order from the sorted LMS suffixes.
    {
        let (head, tail) = sa.split_at_mut(n - n1);
        let mut m = 0;
        for i in 1..n {
            if is_lms(i) {
                tail[m] = i as u32;
                m += 1;
            }
        }
        for v in head[..n1].iter_mut() {
            *v = tail[*v as usize];
        }
    }
    sa[n1..].fill(EMPTY);
    bucket_ends(&mut bkt);
    for i in (0..n1).rev() {
        let j = sa[i];
        sa[i] = EMPTY;
        let c = s[j as usize] as usize;
        bkt[c] -= 1;
        sa[bkt[c] as usize] = j;
    }
    induce(sa, &mut bkt);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_sa(text: &[u32]) -> Vec<u32> {
        let mut sa: Vec<u32> = (0..text.len() as u32).collect();
        sa.sort_by(|&a, &b| text[a as usize..].cmp(&text[b as usize..]));
        sa
    }

    /// Longest tail of `ctx` (≤ max) occurring in `t` with a follower, and
    /// the follower counts of all its occurrences.
    fn brute_match(t: &[u32], ctx: &[u32], max: usize) -> (usize, Vec<(u32, u32)>) {
        for len in (1..=max.min(ctx.len())).rev() {
            let pat = &ctx[ctx.len() - len..];
            let mut next: Vec<u32> = (0..t.len())
                .filter(|&s| s + len < t.len() && &t[s..s + len] == pat)
                .map(|s| t[s + len])
                .collect();
            if !next.is_empty() {
                next.sort_unstable();
                let mut counts: Vec<(u32, u32)> = Vec::new();
                for x in next {
                    match counts.last_mut() {
                        Some((l, c)) if *l == x => *c += 1,
                        _ => counts.push((x, 1)),
                    }
                }
                return (len, counts);
            }
        }
        (0, Vec::new())
    }

    #[test]
    fn sais_matches_sorting_on_small_cases() {
        for text in [
            vec![0u32],
            vec![1, 0],
            vec![1, 1, 1, 1, 0],
            vec![2, 1, 2, 1, 2, 1, 0],
            vec![3, 1, 2, 3, 1, 2, 3, 1, 2, 1, 0],
        ] {
            let mut sa = vec![0; text.len()];
            sais(&text, &mut sa, 4);
            assert_eq!(sa, brute_sa(&text), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn sais_agrees_with_sorting(body in proptest::collection::vec(1u32..5, 0..300), big in any::<bool>()) {
            // Small alphabets (many repeats) and a sparse large one.
            let mut text: Vec<u32> = body.iter().map(|&c| if big { c * 199_999 } else { c }).collect();
            text.push(0);
            let mut sa = vec![0; text.len()];
            sais(&text, &mut sa, 1_000_000);
            prop_assert_eq!(sa, brute_sa(&text));
        }

        #[test]
        fn index_sorts_reversed_suffixes(tokens in proptest::collection::vec(0u32..3, 0..200)) {
            let index = SuffixIndex::build(tokens.clone(), 3);
            let rev: Vec<u32> = tokens.iter().rev().copied().collect();
            prop_assert_eq!(index.suffix_array().to_vec(), brute_sa(&rev));
        }

        #[test]
        fn longest_match_agrees_with_brute_force(
            tokens in proptest::collection::vec(0u32..4, 1..250),
            ctx in proptest::collection::vec(0u32..4, 0..40),
            alphabet in 1u32..5,
            max in 1usize..20,
        ) {
            let tokens: Vec<u32> = tokens.iter().map(|&t| t % alphabet).collect();
            let ctx: Vec<u32> = ctx.iter().map(|&t| t % alphabet).collect();
            let index = SuffixIndex::build(tokens.clone(), 4);
            let m = index.longest_match(&ctx, max);
            let (len, counts) = brute_match(&tokens, &ctx, max);
            prop_assert_eq!(m.len, len);
            let f = index.followers(&m, usize::MAX);
            prop_assert_eq!(&f.counts, &counts);
            prop_assert!(!f.sampled);
            let total: u32 = counts.iter().map(|&(_, c)| c).sum();
            prop_assert_eq!(f.total, total);
            prop_assert_eq!(f.occurrences, total as usize);
            // A capped count is a sample: never more than the cap, the
            // occurrences still exact.
            let capped = index.followers(&m, 3);
            prop_assert!(capped.total <= 3);
            prop_assert_eq!(capped.occurrences, total as usize);
            prop_assert_eq!(capped.sampled, m.hi - m.lo > 3);
        }

        #[test]
        fn contexts_taken_from_the_stream_match_at_least_their_own_tail(
            tokens in proptest::collection::vec(0u32..6, 2..300),
            at in 0usize..300,
        ) {
            // The context tokens[..=i] always occurs (at i itself, followed
            // by tokens[i+1]); the match is as long as brute force says.
            let i = at % (tokens.len() - 1);
            let index = SuffixIndex::build(tokens.clone(), 6);
            let ctx = &tokens[..=i];
            let m = index.longest_match(ctx, MAX_MATCH);
            prop_assert!(m.len >= 1.min(ctx.len()));
            prop_assert_eq!(m.len, brute_match(&tokens, ctx, MAX_MATCH).0);
        }
    }
}
