//! A bounded table ordered by recency: the agent's flow and device tables.
//!
//! [`Lru`] holds at most its capacity of values, each knowing its own key
//! ([`Keyed`]), in one contiguous vector (no allocation per value, the key
//! stored once), with an index of `u32` positions (hashbrown's
//! [`HashTable`], seeded foldhash: remote senders choose these keys) and an
//! intrusive doubly linked list from the most to the least recently
//! touched. Lookup, insert, touch, eviction and removal are O(1); removal
//! moves the last value into the hole, so positions are stable only until
//! the next removal or eviction.
//!
//! Memory: the vector is reserved at its capacity when the table is made
//! (untouched pages cost no RSS) and never grows; the index costs about
//! 5 bytes a bucket, at most two buckets a value.

use std::hash::{BuildHasher as _, Hash};

use hashbrown::HashTable;

/// "No position" in the recency list.
const NIL: u32 = u32::MAX;

/// A hint to load the cache line at `p`: it never faults, whatever the
/// address, and changes nothing but the cache.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A value that carries its key.
pub trait Keyed {
    type Key: Copy + Eq + Hash;
    fn key(&self) -> Self::Key;
}

/// A value's place in the recency list, kept apart from the values: a
/// touch rewrites its neighbours' links, and in a vector of their own (8
/// bytes a value) those stay in cache where the values (hundreds of bytes
/// each) would not.
#[derive(Clone, Copy, Debug)]
struct Link {
    /// Towards the most recently touched end.
    newer: u32,
    /// Towards the least recently touched end.
    older: u32,
}

/// At most `capacity` values, least recently touched evicted first.
#[derive(Debug)]
pub struct Lru<V: Keyed> {
    slots: Vec<V>,
    /// `links[i]` is `slots[i]`'s.
    links: Vec<Link>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Most recently touched.
    head: u32,
    /// Least recently touched: the next to go.
    tail: u32,
    capacity: usize,
}

/// Where [`Lru::insert_or_find`] found or put a key.
#[derive(Debug)]
pub struct Found<V> {
    /// Its position.
    pub pos: usize,
    /// Whether it was just inserted.
    pub inserted: bool,
    /// The value evicted to make room, if one was.
    pub evicted: Option<V>,
}

impl<V: Keyed> Lru<V> {
    /// An empty table for at most `capacity` values (at least 1, below
    /// `u32::MAX`).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        Lru {
            slots: Vec::with_capacity(capacity),
            links: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
            hasher: foldhash::fast::RandomState::default(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn hash(&self, key: &V::Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The position of `key`, if present.
    pub fn find(&self, key: &V::Key) -> Option<usize> {
        self.find_hashed(self.hash(key), key)
    }

    /// The hash of `key` that [`Lru::find_hashed`] and [`Lru::prefetch`]
    /// take.
    pub fn hash_of(&self, key: &V::Key) -> u64 {
        self.hash(key)
    }

    /// The index's buckets (a power of two): a key's probe starts at
    /// bucket `hash & (buckets - 1)`, so lookups in that order read the
    /// index from one end to the other instead of at random.
    pub fn index_buckets(&self) -> usize {
        self.index.num_buckets()
    }

    /// The position of `key`, whose [`Lru::hash_of`] is `hash`.
    pub fn find_hashed(&self, hash: u64, key: &V::Key) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots[i as usize].key() == *key)
            .map(|&i| i as usize)
    }

    /// Starts loading the value with hash `hash` into the CPU's cache
    /// without waiting for it, so that a lookup a little later finds it
    /// there: a fold of many keys issues this some keys ahead, and the
    /// loads of several values overlap instead of each stalling in turn.
    /// The probe compares no key: it prefetches every value whose index
    /// tag matches (almost always just the one).
    pub fn prefetch(&self, hash: u64) {
        let slots = self.slots.as_ptr();
        let _ = self.index.find(hash, |&i| {
            let value = slots.wrapping_add(i as usize);
            prefetch(value.cast());
            prefetch(value.cast::<u8>().wrapping_add(64));
            false
        });
    }

    pub fn contains_key(&self, key: &V::Key) -> bool {
        self.find(key).is_some()
    }

    pub fn get(&self, key: &V::Key) -> Option<&V> {
        self.find(key).map(|i| &self.slots[i])
    }

    /// The value of `key`, without touching it.
    pub fn get_mut(&mut self, key: &V::Key) -> Option<&mut V> {
        self.find(key).map(|i| &mut self.slots[i])
    }

    pub fn at(&self, pos: usize) -> &V {
        &self.slots[pos]
    }

    pub fn at_mut(&mut self, pos: usize) -> &mut V {
        &mut self.slots[pos]
    }

    /// Finds `key`, or inserts `make()` as the most recently touched value,
    /// first evicting the least recently touched one when the table is full.
    pub fn insert_or_find(&mut self, key: V::Key, make: impl FnOnce() -> V) -> Found<V> {
        let hash = self.hash(&key);
        let slots = &self.slots;
        if let Some(&i) = self.index.find(hash, |&i| slots[i as usize].key() == key) {
            return Found {
                pos: i as usize,
                inserted: false,
                evicted: None,
            };
        }
        let evicted = if self.slots.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let pos = self.slots.len();
        self.slots.push(make());
        self.links.push(Link {
            newer: NIL,
            older: NIL,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, pos as u32, |&i| {
            hasher.hash_one(slots[i as usize].key())
        });
        self.link_head(pos as u32);
        Found {
            pos,
            inserted: true,
            evicted,
        }
    }

    /// Makes the value at `pos` the most recently touched.
    pub fn touch(&mut self, pos: usize) {
        let pos = pos as u32;
        if self.head == pos {
            return;
        }
        self.unlink(pos);
        self.link_head(pos);
    }

    /// The least recently touched value.
    pub fn oldest(&self) -> Option<&V> {
        (self.tail != NIL).then(|| &self.slots[self.tail as usize])
    }

    /// Removes and returns the least recently touched value.
    pub fn pop_oldest(&mut self) -> Option<V> {
        (self.tail != NIL).then(|| self.remove_at(self.tail as usize))
    }

    /// Removes the value at `pos`; the last value moves into its place.
    pub fn remove_at(&mut self, pos: usize) -> V {
        let p = pos as u32;
        self.unlink(p);
        let hash = self.hash(&self.slots[pos].key());
        if let Ok(e) = self.index.find_entry(hash, |&i| i == p) {
            e.remove();
        }
        let last = self.slots.len() - 1;
        let removed = self.slots.swap_remove(pos);
        self.links.swap_remove(pos);
        if pos != last {
            // The former last value is now at `pos`: repoint its index
            // entry and its neighbours.
            let hash = self.hash(&self.slots[pos].key());
            let l = last as u32;
            if let Some(i) = self.index.find_mut(hash, |&i| i == l) {
                *i = p;
            }
            let Link { newer, older } = self.links[pos];
            match newer {
                NIL => self.head = p,
                n => self.links[n as usize].older = p,
            }
            match older {
                NIL => self.tail = p,
                o => self.links[o as usize].newer = p,
            }
        }
        removed
    }

    /// Removes `key`'s value, if present.
    pub fn remove(&mut self, key: &V::Key) -> Option<V> {
        self.find(key).map(|i| self.remove_at(i))
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + Clone {
        self.slots.iter()
    }

    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut V> {
        self.slots.iter_mut()
    }

    /// Calls `f` on each value from the most recently touched on, until it
    /// returns false (or the values end).
    pub fn newest_while(&mut self, mut f: impl FnMut(&mut V) -> bool) {
        let mut p = self.head;
        while p != NIL && f(&mut self.slots[p as usize]) {
            p = self.links[p as usize].older;
        }
    }

    /// Removes every value for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        let mut i = 0;
        while i < self.slots.len() {
            if keep(&mut self.slots[i]) {
                i += 1;
            } else {
                // The last value moved to `i`: look at it next.
                self.remove_at(i);
            }
        }
    }

    fn unlink(&mut self, p: u32) {
        let Link { newer, older } = self.links[p as usize];
        match newer {
            NIL => self.head = older,
            n => self.links[n as usize].older = older,
        }
        match older {
            NIL => self.tail = newer,
            o => self.links[o as usize].newer = newer,
        }
        self.links[p as usize] = Link {
            newer: NIL,
            older: NIL,
        };
    }

    fn link_head(&mut self, p: u32) {
        let old = self.head;
        self.links[p as usize] = Link {
            newer: NIL,
            older: old,
        };
        match old {
            NIL => self.tail = p,
            o => self.links[o as usize].newer = p,
        }
        self.head = p;
    }

    /// The keys from most to least recently touched (tests).
    #[cfg(test)]
    fn order(&self) -> Vec<V::Key> {
        let mut out = Vec::new();
        let mut p = self.head;
        while p != NIL {
            out.push(self.slots[p as usize].key());
            p = self.links[p as usize].older;
        }
        out
    }
}

impl<V: Keyed> std::ops::Index<&V::Key> for Lru<V> {
    type Output = V;

    /// The value of `key`; panics when absent.
    fn index(&self, key: &V::Key) -> &V {
        self.get(key).expect("no value with this key")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct V(u32, u64);

    impl Keyed for V {
        type Key = u32;
        fn key(&self) -> u32 {
            self.0
        }
    }

    fn check(t: &Lru<V>, model: &VecDeque<u32>) {
        assert_eq!(t.order(), Vec::from(model.clone()));
        assert_eq!(t.len(), model.len());
        for k in model {
            assert_eq!(t.get(k).map(|v| v.0), Some(*k));
        }
        let mut back: Vec<u32> = Vec::new();
        let mut p = t.tail;
        while p != NIL {
            back.push(t.slots[p as usize].0);
            p = t.links[p as usize].newer;
        }
        back.reverse();
        assert_eq!(back, t.order(), "both directions agree");
    }

    #[test]
    fn evicts_the_least_recently_touched() {
        let mut t = Lru::new(3);
        for k in [1, 2, 3] {
            let f = t.insert_or_find(k, || V(k, 0));
            assert!(f.inserted && f.evicted.is_none());
        }
        let p = t.find(&1).unwrap();
        t.touch(p);
        let f = t.insert_or_find(4, || V(4, 0));
        assert_eq!(f.evicted, Some(V(2, 0)), "2 is the least recently touched");
        assert_eq!(t.order(), [4, 1, 3]);
        let f = t.insert_or_find(3, || unreachable!());
        assert!(!f.inserted && f.evicted.is_none());
        assert_eq!(t.len(), 3);
    }

    /// Random operations against a plain list kept in recency order.
    #[test]
    fn matches_a_simple_model() {
        let mut t = Lru::new(50);
        let mut model: VecDeque<u32> = VecDeque::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 80) as u32;
            match (x >> 32) % 4 {
                0 | 1 => {
                    let f = t.insert_or_find(k, || V(k, step));
                    if f.inserted {
                        if model.len() == 50 {
                            let old = model.pop_back().unwrap();
                            assert_eq!(f.evicted.map(|v| v.0), Some(old));
                        }
                        model.push_front(k);
                    } else {
                        assert_eq!(t.at(f.pos).0, k);
                    }
                }
                2 => {
                    if let Some(p) = t.find(&k) {
                        t.touch(p);
                        model.retain(|&m| m != k);
                        model.push_front(k);
                    }
                }
                _ => {
                    let removed = t.remove(&k).map(|v| v.0);
                    let had = model.contains(&k);
                    model.retain(|&m| m != k);
                    assert_eq!(removed, had.then_some(k));
                }
            }
            check(&t, &model);
        }
        t.retain(|v| v.0 % 2 == 0);
        model.retain(|k| k % 2 == 0);
        check(&t, &model);
        while let Some(v) = t.pop_oldest() {
            assert_eq!(Some(v.0), model.pop_back());
        }
        assert!(t.is_empty() && model.is_empty());
    }
}
