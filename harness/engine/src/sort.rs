//! The exact sorting algorithms the C libraries run. Address-sorting comparators are not
//! transitive (rules that apply only to some pairs, index tie-breaks), so the result depends
//! on which pairs the algorithm compares: reproducing the algorithm is the only way to
//! reproduce the order.

use std::cmp::Ordering;

/// glibc's `qsort_r` as used by getaddrinfo (2.36 msort.c and 2.41 qsort.c alike): top-down
/// merge sort, split at n/2, the left element taken when `cmp <= 0`.
pub fn glibc_msort<T: Copy>(v: &mut [T], cmp: &mut dyn FnMut(&T, &T) -> Ordering) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) != Ordering::Greater {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    // The right remainder is already in place.
    v[..merged.len()].copy_from_slice(&merged);
}

/// FreeBSD libc's `qsort` (Bentley & McIlroy, with the insertion-sort switch for n < 7 and
/// after a partition without swaps), as `lib/libc/stdlib/qsort.c` ran it before commit
/// 5205b32de3fb (2025, "libc: Drop incorrect qsort optimization", which removed the switch
/// after a partition without swaps). The difference changes only how many comparisons are
/// made: `comp_dst` is a strict total order on every list getaddrinfo builds (its last rule
/// compares original positions), so the sorted result is the same either way.
pub fn freebsd_qsort<T: Copy>(v: &mut [T], cmp: &mut dyn FnMut(&T, &T) -> Ordering) {
    qsort_range(v, 0, v.len(), cmp);
}

fn insertion<T: Copy>(v: &mut [T], base: usize, n: usize, cmp: &mut dyn FnMut(&T, &T) -> Ordering) {
    for pm in base + 1..base + n {
        let mut pl = pm;
        while pl > base && cmp(&v[pl - 1], &v[pl]) == Ordering::Greater {
            v.swap(pl, pl - 1);
            pl -= 1;
        }
    }
}

fn med3<T: Copy>(v: &[T], a: usize, b: usize, c: usize, cmp: &mut dyn FnMut(&T, &T) -> Ordering) -> usize {
    use Ordering::*;
    if cmp(&v[a], &v[b]) == Less {
        if cmp(&v[b], &v[c]) == Less {
            b
        } else if cmp(&v[a], &v[c]) == Less {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) == Greater {
        b
    } else if cmp(&v[a], &v[c]) == Less {
        a
    } else {
        c
    }
}

fn vecswap<T: Copy>(v: &mut [T], a: usize, b: usize, n: usize) {
    for k in 0..n {
        v.swap(a + k, b + k);
    }
}

fn qsort_range<T: Copy>(v: &mut [T], mut base: usize, mut n: usize, cmp: &mut dyn FnMut(&T, &T) -> Ordering) {
    use Ordering::*;
    if n < 2 {
        return;
    }
    loop {
        if n < 7 {
            insertion(v, base, n, cmp);
            return;
        }
        let mut pm = base + n / 2;
        if n > 7 {
            let mut pl = base;
            let mut pn = base + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(base, pm);
        let mut swapped = false;
        let (mut pa, mut pb) = (base + 1, base + 1);
        let (mut pc, mut pd) = (base + n - 1, base + n - 1);
        loop {
            while pb <= pc {
                let r = cmp(&v[pb], &v[base]);
                if r == Greater {
                    break;
                }
                if r == Equal {
                    swapped = true;
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let r = cmp(&v[pc], &v[base]);
                if r == Less {
                    break;
                }
                if r == Equal {
                    swapped = true;
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            swapped = true;
            pb += 1;
            pc -= 1;
        }
        if !swapped {
            insertion(v, base, n, cmp);
            return;
        }
        let pn = base + n;
        let d1 = (pa - base).min(pb - pa);
        vecswap(v, base, pb - d1, d1);
        let d1 = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - d1, d1);
        let d1 = pb - pa;
        let d2 = pd - pc;
        if d1 <= d2 {
            if d1 > 1 {
                qsort_range(v, base, d1, cmp);
            }
            if d2 > 1 {
                base = pn - d2;
                n = d2;
                continue;
            }
        } else {
            if d2 > 1 {
                qsort_range(v, pn - d2, d2, cmp);
            }
            if d1 > 1 {
                n = d1;
                continue;
            }
        }
        return;
    }
}

/// Go's `sort.Stable` (1.19's `sort.Stable`, 1.24's `slices.SortStableFunc`, the same
/// algorithm): insertion sort in blocks of 20, then `symMerge` rounds. Reproduced rather
/// than delegated to Rust's stable sort because Go's comparator is not transitive when
/// rule 9 is skipped for IPv4 (then different algorithms can disagree).
pub fn go_stable<T>(v: &mut [T], less: &mut dyn FnMut(&T, &T) -> bool) {
    fn insertion<T>(v: &mut [T], a: usize, b: usize, less: &mut dyn FnMut(&T, &T) -> bool) {
        for i in a + 1..b {
            let mut j = i;
            while j > a && less(&v[j], &v[j - 1]) {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
    }
    fn swap_range<T>(v: &mut [T], a: usize, b: usize, n: usize) {
        for i in 0..n {
            v.swap(a + i, b + i);
        }
    }
    fn rotate<T>(v: &mut [T], a: usize, m: usize, b: usize) {
        let (mut i, mut j) = (m - a, b - m);
        while i != j {
            if i > j {
                swap_range(v, m - i, m, j);
                i -= j;
            } else {
                swap_range(v, m - i, m + j - i, i);
                j -= i;
            }
        }
        swap_range(v, m - i, m, i);
    }
    fn sym_merge<T>(v: &mut [T], a: usize, m: usize, b: usize, less: &mut dyn FnMut(&T, &T) -> bool) {
        if m - a == 1 {
            let (mut i, mut j) = (m, b);
            while i < j {
                let h = (i + j) / 2;
                if less(&v[h], &v[a]) { i = h + 1 } else { j = h }
            }
            for k in a..i - 1 {
                v.swap(k, k + 1);
            }
            return;
        }
        if b - m == 1 {
            let (mut i, mut j) = (a, m);
            while i < j {
                let h = (i + j) / 2;
                if !less(&v[m], &v[h]) { i = h + 1 } else { j = h }
            }
            let mut k = m;
            while k > i {
                v.swap(k, k - 1);
                k -= 1;
            }
            return;
        }
        let mid = (a + b) / 2;
        let n = mid + m;
        let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
        let p = n - 1;
        while start < r {
            let c = (start + r) / 2;
            if !less(&v[p - c], &v[c]) { start = c + 1 } else { r = c }
        }
        let end = n - start;
        if start < m && m < end {
            rotate(v, start, m, end);
        }
        if a < start && start < mid {
            sym_merge(v, a, start, mid, less);
        }
        if mid < end && end < b {
            sym_merge(v, mid, end, b, less);
        }
    }
    let n = v.len();
    let mut block = 20;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion(v, a, b, less);
        a = b;
        b += block;
    }
    insertion(v, a, n, less);
    while block < n {
        let (mut a, mut b) = (0, 2 * block);
        while b <= n {
            sym_merge(v, a, a + block, b, less);
            a = b;
            b += 2 * block;
        }
        if a + block < n {
            sym_merge(v, a, a + block, n, less);
        }
        block *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn both_sort_total_orders_like_std(mut v in proptest::collection::vec(0u8..20, 0..80)) {
            let mut expect = v.clone();
            expect.sort();
            let mut m = v.clone();
            glibc_msort(&mut m, &mut |a, b| a.cmp(b));
            prop_assert_eq!(&m, &expect);
            let mut g = v.clone();
            go_stable(&mut g, &mut |a, b| a < b);
            prop_assert_eq!(&g, &expect);
            freebsd_qsort(&mut v, &mut |a, b| a.cmp(b));
            prop_assert_eq!(&v, &expect);
        }

        #[test]
        fn glibc_msort_is_stable(v in proptest::collection::vec((0u8..4, 0u16..1000), 0..60)) {
            let mut m = v.clone();
            glibc_msort(&mut m, &mut |a, b| a.0.cmp(&b.0));
            let mut expect = v.clone();
            expect.sort_by_key(|x| x.0);
            prop_assert_eq!(m, expect);
        }
    }

    /// glibc's merge never compares the first and third of three entries when the middle one
    /// sorts between them: with a comparator where only (A, C) is decided by a "rule 9" and
    /// everything else by input index, the input order C B A survives (observed on glibc
    /// 2.36 and 2.41 by the research notes: dests 2001:db8:1:2::1, 116.203.176.52,
    /// 2001:db8:1:1::ab).
    #[test]
    fn glibc_merge_keeps_a_non_transitive_order() {
        // items: (name, input index)
        let cmp = &mut |a: &(char, usize), b: &(char, usize)| match (a.0, b.0) {
            ('A', 'C') => Ordering::Less,
            ('C', 'A') => Ordering::Greater,
            _ => a.1.cmp(&b.1),
        };
        let mut v = [('C', 0), ('B', 1), ('A', 2)];
        glibc_msort(&mut v, cmp);
        assert_eq!(v.map(|x| x.0), ['C', 'B', 'A']);
        let mut v = [('B', 0), ('C', 1), ('A', 2)];
        glibc_msort(&mut v, cmp);
        assert_eq!(v.map(|x| x.0), ['B', 'A', 'C']);
    }

    #[test]
    fn freebsd_insertion_never_swaps_ties() {
        let mut v = [(1, 'a'), (0, 'b'), (1, 'c'), (0, 'd')];
        freebsd_qsort(&mut v, &mut |a, b| a.0.cmp(&b.0));
        assert_eq!(v.map(|x| x.1), ['b', 'd', 'a', 'c']);
    }
}
