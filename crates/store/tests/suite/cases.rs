//! The backend-agnostic cases: etcd's contract as the API server relies on it. Each case takes
//! a fresh [`Backend`], keeps its keys under the backend's prefix, and asserts only what every
//! backend must do (revisions are compared relative to each other, never to fixed numbers).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use ledge_store::{Event, EventKind, KeyValue, Revision, Store, StoreError};

use crate::harness::{Backend, next_event, next_events};

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub async fn create_then_get_and_duplicate_create(b: &mut impl Backend) -> anyhow::Result<()> {
    let store = b.store();
    let key = format!("{}cm/default/demo", b.prefix());
    let before = store.current_revision();

    let created = store.create(&key, value("one")).await?;
    ensure!(created.key == key);
    ensure!(created.value == value("one"));
    ensure!(
        created.create_revision > before,
        "create did not advance the revision"
    );
    ensure!(created.mod_revision == created.create_revision);
    ensure!(store.current_revision() >= created.mod_revision);

    let got = store.get(&key).await?.context("created key is missing")?;
    ensure!(
        got == created,
        "get returned {got:?}, create returned {created:?}"
    );

    match store.create(&key, value("two")).await {
        Err(StoreError::AlreadyExists(k)) => ensure!(k == key),
        other => bail!("duplicate create answered {other:?}"),
    }
    let still = store.get(&key).await?.context("key vanished")?;
    ensure!(
        still == created,
        "a refused create changed the key: {still:?}"
    );
    ensure!(
        store
            .get(&format!("{}cm/default/absent", b.prefix()))
            .await?
            .is_none()
    );
    Ok(())
}

pub async fn update_is_compare_and_swap(b: &mut impl Backend) -> anyhow::Result<()> {
    let store = b.store();
    let key = format!("{}cm/default/cas", b.prefix());
    let created = store.create(&key, value("v1")).await?;

    let updated = store
        .update(&key, value("v2"), created.mod_revision)
        .await?;
    ensure!(updated.value == value("v2"));
    ensure!(
        updated.create_revision == created.create_revision,
        "update changed create_revision"
    );
    ensure!(updated.mod_revision > created.mod_revision);

    match store.update(&key, value("v3"), created.mod_revision).await {
        Err(StoreError::Conflict {
            key: k,
            expected,
            current,
        }) => {
            ensure!(k == key);
            ensure!(expected == created.mod_revision);
            ensure!(
                *current == updated,
                "conflict carried {current:?}, stored is {updated:?}"
            );
        }
        other => bail!("stale update answered {other:?}"),
    }
    let stored = store.get(&key).await?.context("key vanished")?;
    ensure!(
        stored == updated,
        "a refused update changed the key: {stored:?}"
    );

    match store
        .update(&format!("{}cm/default/absent", b.prefix()), value("x"), 1)
        .await
    {
        Err(StoreError::NotFound(_)) => Ok(()),
        other => bail!("update of an absent key answered {other:?}"),
    }
}

pub async fn delete_with_and_without_precondition(b: &mut impl Backend) -> anyhow::Result<()> {
    let store = b.store();
    let guarded = format!("{}cm/default/guarded", b.prefix());
    let free = format!("{}cm/default/free", b.prefix());
    let first = store.create(&guarded, value("g1")).await?;
    let second = store
        .update(&guarded, value("g2"), first.mod_revision)
        .await?;
    let other = store.create(&free, value("f")).await?;

    match store.delete(&guarded, Some(first.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => ensure!(*current == second),
        other => bail!("delete with a stale precondition answered {other:?}"),
    }
    ensure!(
        store.get(&guarded).await?.as_ref() == Some(&second),
        "refused delete removed the key"
    );

    let deleted = store.delete(&guarded, Some(second.mod_revision)).await?;
    ensure!(
        deleted.value == value("g2"),
        "delete must return the last value"
    );
    ensure!(deleted.create_revision == first.create_revision);
    ensure!(
        deleted.mod_revision > other.mod_revision,
        "delete must get its own, newer revision"
    );
    ensure!(store.get(&guarded).await?.is_none());
    ensure!(store.current_revision() >= deleted.mod_revision);

    let unguarded = store.delete(&free, None).await?;
    ensure!(unguarded.value == value("f"));
    ensure!(unguarded.mod_revision > deleted.mod_revision);
    ensure!(store.get(&free).await?.is_none());

    match store.delete(&free, None).await {
        Err(StoreError::NotFound(k)) => ensure!(k == free),
        other => bail!("delete of a deleted key answered {other:?}"),
    }
    // A deleted key can be created again, starting a new life.
    let reborn = store.create(&guarded, value("g3")).await?;
    ensure!(reborn.create_revision > deleted.mod_revision);
    Ok(())
}

pub async fn range_reads_prefix_in_key_order_at_one_revision(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    let store = b.store();
    let p = b.prefix();
    // Written out of key order, with neighbours that share a string prefix but not the range's.
    for name in [
        "pods/c",
        "pods/a",
        "podsx/z",
        "pod/y",
        "pods/b",
        "services/a",
    ] {
        store.create(&format!("{p}{name}"), value(name)).await?;
    }
    let gone = store.create(&format!("{p}pods/d"), value("pods/d")).await?;
    store.delete(&gone.key, None).await?;

    let result = store.range(&format!("{p}pods/")).await?;
    let keys: Vec<&str> = result.kvs.iter().map(|kv| kv.key.as_str()).collect();
    let expected: Vec<String> = ["pods/a", "pods/b", "pods/c"]
        .iter()
        .map(|n| format!("{p}{n}"))
        .collect();
    ensure!(keys == expected, "range returned {keys:?}");
    for kv in &result.kvs {
        ensure!(
            kv.value == value(kv.key.trim_start_matches(p)),
            "wrong value for {}",
            kv.key
        );
        ensure!(
            kv.mod_revision <= result.revision,
            "{} is newer than the read revision",
            kv.key
        );
    }
    ensure!(
        result.revision == store.current_revision(),
        "an idle store's range must read the newest revision"
    );
    ensure!(store.range(&format!("{p}nothing/")).await?.kvs.is_empty());
    Ok(())
}

pub async fn revisions_strictly_increase_and_survive_restart(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    let key = format!("{}cm/default/durable", b.prefix());
    let store = b.store();
    let mut revisions = vec![store.current_revision()];
    let mut kv = store.create(&key, value("0")).await?;
    revisions.push(kv.mod_revision);
    for i in 1..5 {
        kv = store
            .update(&key, value(&i.to_string()), kv.mod_revision)
            .await?;
        revisions.push(kv.mod_revision);
    }
    let side = format!("{}cm/default/side", b.prefix());
    store.create(&side, value("s")).await?;
    let deleted = store.delete(&side, None).await?;
    revisions.push(deleted.mod_revision);
    ensure!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions not increasing: {revisions:?}"
    );
    drop(store);

    b.restart().await?;
    let store = b.store();
    let last = deleted.mod_revision;
    ensure!(
        store.current_revision() >= last,
        "revision went back to {} after restart",
        store.current_revision()
    );
    ensure!(
        store.get(&key).await?.as_ref() == Some(&kv),
        "value changed across restart"
    );
    ensure!(
        store.get(&side).await?.is_none(),
        "a delete was undone by restart"
    );
    let next = store.update(&key, value("after"), kv.mod_revision).await?;
    ensure!(
        next.mod_revision > last,
        "revision {} reused after restart",
        next.mod_revision
    );
    Ok(())
}

pub async fn watch_replays_exactly_the_events_after_its_start(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    let store = b.store();
    let p = b.prefix();
    let watched = format!("{p}watched/");
    let mut written = Vec::new();
    for i in 0..6 {
        let key = format!("{watched}k{}", i % 3);
        let kv = match i {
            0..3 => store.create(&key, value(&format!("v{i}"))).await?,
            _ => {
                let current = store.get(&key).await?.context("missing")?;
                store
                    .update(&key, value(&format!("v{i}")), current.mod_revision)
                    .await?
            }
        };
        // Writes outside the prefix interleave and must not show up.
        store
            .create(&format!("{p}other/{i}"), value("noise"))
            .await?;
        written.push(kv);
    }
    let start = written[2].mod_revision;
    let mut stream = store.watch(&watched, start)?;
    let replayed = next_events(&mut stream, 3).await?;
    let got: Vec<&KeyValue> = replayed.iter().map(|e| &e.kv).collect();
    let want: Vec<&KeyValue> = written[3..].iter().collect();
    ensure!(got == want, "replay returned {got:?}, expected {want:?}");
    ensure!(replayed.iter().all(|e| e.kind == EventKind::Put));
    ensure!(
        replayed[0].prev.as_ref() == Some(&written[0]),
        "prev of a replayed update is wrong"
    );

    // Nothing else is pending: the next event is the next write under the prefix.
    store
        .create(&format!("{p}other/late"), value("noise"))
        .await?;
    let live = store
        .create(&format!("{watched}live"), value("live"))
        .await?;
    let event = next_event(&mut stream).await?;
    ensure!(event.kv == live, "expected the live write, got {event:?}");
    Ok(())
}

pub async fn watch_sees_puts_and_deletes_with_prev(b: &mut impl Backend) -> anyhow::Result<()> {
    let store = b.store();
    let key = format!("{}cm/default/life", b.prefix());
    let mut stream = store.watch(b.prefix(), store.current_revision())?;
    let created = store.create(&key, value("a")).await?;
    let updated = store.update(&key, value("b"), created.mod_revision).await?;
    let deleted = store.delete(&key, None).await?;

    let events = next_events(&mut stream, 3).await?;
    let expected = [
        Event {
            kind: EventKind::Put,
            kv: created.clone(),
            prev: None,
        },
        Event {
            kind: EventKind::Put,
            kv: updated.clone(),
            prev: Some(created),
        },
        Event {
            kind: EventKind::Delete,
            kv: deleted.clone(),
            prev: Some(updated.clone()),
        },
    ];
    ensure!(
        events == expected,
        "events {events:#?}\nexpected {expected:#?}"
    );
    let delete = &events[2];
    ensure!(
        delete.kv.value == value("b"),
        "a delete event carries the last value"
    );
    ensure!(delete.revision() == deleted.mod_revision && delete.revision() > updated.mod_revision);
    Ok(())
}

pub async fn watch_from_current_revision_sees_only_new_writes(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    let store = b.store();
    let p = b.prefix();
    store.create(&format!("{p}old"), value("old")).await?;
    let mut stream = store.watch(p, store.current_revision())?;
    let new = store.create(&format!("{p}new"), value("new")).await?;
    let event = next_event(&mut stream).await?;
    ensure!(
        event.kv == new,
        "watch from the current revision delivered {event:?}"
    );
    Ok(())
}

pub async fn watchers_agree_on_order_under_concurrent_writers(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    const TASKS: usize = 8;
    const WRITES: usize = 25;
    let store = b.store();
    let p = b.prefix().to_owned();
    let start = store.current_revision();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(store.watch(&p, start)?);
    }
    let acked = hammer(&store, &p, TASKS, WRITES).await?;
    // One more watcher joins late and must replay the same history.
    streams.push(store.watch(&p, start)?);

    let mut orders = Vec::new();
    for stream in &mut streams {
        let events = next_events(stream, TASKS * WRITES).await?;
        let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
        ensure!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "watch order not increasing"
        );
        orders.push(events);
    }
    ensure!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "watchers disagree on the order of events"
    );
    let seen: BTreeSet<Revision> = orders[0].iter().map(Event::revision).collect();
    let acked: BTreeSet<Revision> = acked.iter().map(|kv| kv.mod_revision).collect();
    ensure!(
        seen == acked,
        "watchers saw other revisions than the writers were acknowledged"
    );
    Ok(())
}

pub async fn watch_before_compacted_revision_is_refused(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    let store = b.store();
    let p = b.prefix();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(store.create(&format!("{p}c{i}"), value("x")).await?);
    }
    let cut = written[2].mod_revision;
    store.compact(cut).await?;
    ensure!(
        store.compacted_revision() >= cut,
        "compact did not move the compacted revision"
    );

    let before = written[1].mod_revision;
    match store.watch(p, before) {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            ensure!(requested == before);
            ensure!(compacted >= cut);
        }
        Err(other) => bail!("watch before compaction failed with {other}"),
        Ok(_) => bail!("watch before compaction was accepted"),
    }
    // Compaction never moves back.
    store.compact(written[0].mod_revision).await?;
    ensure!(store.compacted_revision() >= cut);

    let mut stream = store.watch(p, cut)?;
    let replayed = next_events(&mut stream, 2).await?;
    let got: Vec<&KeyValue> = replayed.iter().map(|e| &e.kv).collect();
    ensure!(
        got == written[3..].iter().collect::<Vec<_>>(),
        "replay after compaction: {got:?}"
    );
    Ok(())
}

pub async fn concurrent_writers_are_all_acknowledged_with_distinct_revisions(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    const TASKS: usize = 32;
    const WRITES: usize = 200;
    let store = b.store();
    let p = b.prefix().to_owned();
    let acked = hammer(&store, &p, TASKS, WRITES).await?;
    ensure!(acked.len() == TASKS * WRITES);
    let revisions: HashSet<Revision> = acked.iter().map(|kv| kv.mod_revision).collect();
    ensure!(
        revisions.len() == acked.len(),
        "two writes share a revision"
    );

    let stored = store.range(&p).await?;
    ensure!(
        stored.kvs.len() == TASKS * WRITES,
        "range found {} keys",
        stored.kvs.len()
    );
    let mut acked = acked;
    acked.sort_by(|a, b| a.key.cmp(&b.key));
    ensure!(
        stored.kvs == acked,
        "stored keys differ from the acknowledged writes"
    );
    Ok(())
}

pub async fn concurrent_compare_and_swap_loses_no_increment(
    b: &mut impl Backend,
) -> anyhow::Result<()> {
    const TASKS: u64 = 16;
    const INCREMENTS: u64 = 20;
    let store = b.store();
    let key = format!("{}counter", b.prefix());
    store.create(&key, value("0")).await?;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0_u64;
            let mut current = store.get(&key).await?.context("counter missing")?;
            for _ in 0..INCREMENTS {
                loop {
                    let n: u64 = std::str::from_utf8(&current.value)?.parse()?;
                    match store
                        .update(&key, value(&(n + 1).to_string()), current.mod_revision)
                        .await
                    {
                        Ok(kv) => {
                            current = kv;
                            break;
                        }
                        Err(StoreError::Conflict { current: now, .. }) => {
                            conflicts += 1;
                            current = *now;
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
            }
            anyhow::Ok(conflicts)
        }));
    }
    for task in tasks {
        task.await??;
    }
    let last = store.get(&key).await?.context("counter missing")?;
    ensure!(
        last.value == value(&(TASKS * INCREMENTS).to_string()),
        "counter ended at {:?}",
        last.value
    );
    Ok(())
}

/// Write `tasks × writes` new keys under `prefix` from concurrent tasks; the acknowledged values.
pub async fn hammer(
    store: &Arc<dyn Store>,
    prefix: &str,
    tasks: usize,
    writes: usize,
) -> anyhow::Result<Vec<KeyValue>> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = Arc::clone(store);
        let prefix = prefix.to_owned();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::with_capacity(writes);
            for i in 0..writes {
                let key = format!("{prefix}load/t{task:02}/{i:04}");
                let kv = store.create(&key, value(&key)).await?;
                ensure!(kv.key == key && kv.value == value(&key));
                acked.push(kv);
            }
            anyhow::Ok(acked)
        }));
    }
    let mut acked = Vec::with_capacity(tasks * writes);
    for handle in handles {
        acked.extend(handle.await??);
    }
    Ok(acked)
}
