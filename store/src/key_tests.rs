use super::*;

fn enc<K: Key>(k: &K) -> Vec<u8> {
    k.to_bytes()
}

/// Encoded order must equal value order for every pair, and every key must round-trip.
fn assert_order_preserved<K: Key + Ord + Clone + std::fmt::Debug>(mut values: Vec<K>) {
    values.sort();
    values.dedup();
    for v in &values {
        assert_eq!(&K::decode(&enc(v)).unwrap(), v, "round trip of {v:?}");
    }
    for a in &values {
        for b in &values {
            assert_eq!(a.cmp(b), enc(a).cmp(&enc(b)), "order of {a:?} vs {b:?}");
        }
    }
}

#[test]
fn integers_sort_numerically() {
    assert_order_preserved(vec![0u64, 1, 255, 256, 65535, 1 << 40, u64::MAX]);
    assert_order_preserved(vec![0u32, 7, 300, u32::MAX]);
    assert_order_preserved(vec![i64::MIN, -300, -1, 0, 1, 300, i64::MAX]);
}

#[test]
fn strings_and_bytes_sort_bytewise() {
    let strings = ["", "a", "a\0", "a\0b", "ab", "b", "\u{e9}"];
    assert_order_preserved(strings.iter().map(|s| s.to_string()).collect());
    assert_order_preserved(vec![
        vec![],
        vec![0u8],
        vec![0, 0],
        vec![0, 0xFF],
        vec![1],
        vec![0xFF],
    ]);
    assert_order_preserved(vec![[0u8, 0], [0, 1], [1, 0], [0xFF, 0xFF]]);
}

#[test]
fn tuples_sort_by_first_then_second_even_with_zero_bytes() {
    let mut v = Vec::new();
    for a in ["", "a", "a\0", "a\0\u{1}", "ab", "b"] {
        for b in [0u64, 1, u64::MAX] {
            v.push((a.to_string(), b));
        }
    }
    assert_order_preserved(v);
    let mut w = Vec::new();
    for a in [vec![], vec![0u8], vec![0, 0xFF], vec![1]] {
        for b in ["", "\0", "x"] {
            w.push((a.clone(), b.to_string()));
        }
    }
    assert_order_preserved(w);
    let nested = vec![
        ((1u64, "x".to_string()), 2u32),
        ((1, "x\0".to_string()), 0),
        ((0, "z".to_string()), 9),
    ];
    assert_order_preserved(nested);
}

#[test]
fn borrowed_arguments_encode_like_owned_keys() {
    let mut a = Vec::new();
    KeyArg::<String>::encode_arg("hello", &mut a);
    assert_eq!(a, enc(&"hello".to_string()));
    let mut b = Vec::new();
    KeyArg::<Vec<u8>>::encode_arg(&[1u8, 0, 2][..], &mut b);
    assert_eq!(b, enc(&vec![1u8, 0, 2]));
}

#[test]
fn tuple_prefix_selects_exact_first_part() {
    let mut p = Vec::new();
    PrefixOf::<(String, u64)>::encode_prefix("ab", &mut p);
    assert!(enc(&("ab".to_string(), 5u64)).starts_with(&p));
    assert!(!enc(&("abc".to_string(), 5u64)).starts_with(&p));
    let mut q = Vec::new();
    PrefixOf::<(String, u64)>::encode_prefix(&"ab".to_string(), &mut q);
    assert_eq!(p, q);
}

#[test]
fn prefix_end_is_the_next_prefix() {
    assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    assert_eq!(prefix_end(&[]), None);
}

#[test]
fn malformed_keys_are_errors_not_panics() {
    assert!(u64::decode(&[1, 2, 3])
        .unwrap_err()
        .contains("expected 8 bytes"));
    assert!(<[u8; 4]>::decode(&[1]).is_err());
    assert!(String::decode(&[0xC3]).is_err());
    assert!(<(String, u64)>::decode(b"no terminator")
        .unwrap_err()
        .contains("terminator"));
    assert!(<(String, u64)>::decode(&[b'a', 0, 7])
        .unwrap_err()
        .contains("bad escape"));
    assert!(<(String, u64)>::decode(&[b'a', 0, 0, 1]).is_err());
}
