//! Restarts: the embedded chain reopened (and killed with SIGKILL mid-write), anvil
//! restarted from its `--state` file; followers resume with none missed, none twice.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use alloy::primitives::B256;
use common::{address, signer};
use wardseal_contracts::{
    Anchor, Backend, BackendError, Cursor, EmbeddedChain, Error, EventFollower, Ledger,
    LedgerEvent, PositionedEvent, Role, RpcBackend, Suite,
};

fn anchor(n: u64) -> Anchor {
    let mut root = [0u8; 32];
    root[24..].copy_from_slice(&n.to_be_bytes());
    root[0] = 0x5E;
    Anchor {
        log_id: B256::repeat_byte(0xAA),
        root: B256::from(root),
        count: n + 1,
        first_time: n,
        last_time: n + 1,
    }
}

fn sequences(events: &[PositionedEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e.event {
            LedgerEvent::Anchored { sequence, .. } => Some(sequence),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn embedded_follower_resumes_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, cursor, first) = {
        let chain = EmbeddedChain::open(dir.path()).unwrap();
        let ledger = Ledger::deploy(chain.backend(address(0))).await.unwrap();
        ledger.grant_role(Role::Anchorer, address(0)).await.unwrap();
        let mut follower = EventFollower::from_deployment(ledger.clone());
        for n in 0..3 {
            ledger.anchor(&anchor(n)).await.unwrap();
        }
        let first = follower.poll().await.unwrap();
        // Written after the last poll: must come after the restart.
        for n in 3..5 {
            ledger.anchor(&anchor(n)).await.unwrap();
        }
        (*ledger.suite(), follower.cursor(), first)
    };
    // A second process must not open the same chain while this one has it.
    let chain = EmbeddedChain::open(dir.path()).unwrap();
    assert!(matches!(
        EmbeddedChain::open(dir.path()),
        Err(Error::Backend(BackendError::Locked(_)))
    ));
    let ledger = Ledger::new(chain.backend(address(0)), suite);
    assert_eq!(ledger.anchor_count().await.unwrap(), 5);
    ledger.anchor(&anchor(5)).await.unwrap();
    let mut follower = EventFollower::new(ledger.clone(), cursor);
    let second = follower.poll().await.unwrap();
    let mut all = sequences(&first);
    all.extend(sequences(&second));
    assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn embedded_cuts_a_torn_record_and_refuses_damage() {
    let dir = tempfile::tempdir().unwrap();
    let suite = {
        let chain = EmbeddedChain::open(dir.path()).unwrap();
        let ledger = Ledger::deploy(chain.backend(address(0))).await.unwrap();
        ledger.grant_role(Role::Anchorer, address(0)).await.unwrap();
        ledger.anchor(&anchor(0)).await.unwrap();
        *ledger.suite()
    };
    let log = dir.path().join("chain.log");
    let intact = std::fs::read(&log).unwrap();
    // A write cut short by a crash: a header promising more than is there.
    let mut torn = intact.clone();
    torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&log, &torn).unwrap();
    {
        let chain = EmbeddedChain::open(dir.path()).unwrap();
        let ledger = Ledger::new(chain.backend(address(0)), suite);
        assert_eq!(ledger.anchor_count().await.unwrap(), 1);
        ledger.anchor(&anchor(1)).await.unwrap();
    }
    assert!(std::fs::read(&log).unwrap().len() > intact.len());
    // A flipped byte inside an earlier record is damage, not a torn tail.
    let mut damaged = std::fs::read(&log).unwrap();
    damaged[100] ^= 0xFF;
    std::fs::write(&log, &damaged).unwrap();
    match EmbeddedChain::open(dir.path()) {
        Err(Error::Backend(BackendError::Corrupt { offset, .. })) => assert_eq!(offset, 0),
        other => panic!("damage must be reported, got {other:?}"),
    }
}

/// The child side of `embedded_survives_kill_9`: anchors forever, printing each
/// acknowledged anchor, until the parent kills it.
#[tokio::test]
#[ignore = "child process of embedded_survives_kill_9"]
async fn kill_9_child() {
    let dir = std::env::var("WARDSEAL_KILL9_DIR").expect("run by embedded_survives_kill_9");
    let suite: Suite =
        serde_json::from_slice(&std::fs::read(format!("{dir}/suite.json")).unwrap()).unwrap();
    let chain = EmbeddedChain::open(&dir).unwrap();
    let ledger = Ledger::new(chain.backend(address(0)), suite);
    let mut stdout = std::io::stdout();
    for n in 0.. {
        ledger.anchor(&anchor(n)).await.unwrap();
        writeln!(stdout, "anchored {n}").unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn embedded_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let suite = {
        let chain = EmbeddedChain::open(dir.path()).unwrap();
        let ledger = Ledger::deploy(chain.backend(address(0))).await.unwrap();
        ledger.grant_role(Role::Anchorer, address(0)).await.unwrap();
        *ledger.suite()
    };
    std::fs::write(
        dir.path().join("suite.json"),
        serde_json::to_vec(&suite).unwrap(),
    )
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_9_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WARDSEAL_KILL9_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = None;
    for line in lines {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("anchored ") {
            let n: u64 = n.parse().unwrap();
            acknowledged = Some(n);
            if n >= 40 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush runs in the child
    child.wait().unwrap();
    let acknowledged = acknowledged.expect("the child anchored before it was killed");

    let chain = EmbeddedChain::open(dir.path()).unwrap();
    let ledger = Ledger::new(chain.backend(address(0)), suite);
    let count = ledger.anchor_count().await.unwrap();
    // Everything acknowledged survived; at most the one in flight went further.
    assert!(
        count > acknowledged,
        "count {count}, acknowledged {acknowledged}"
    );
    for n in 0..=acknowledged {
        let found = ledger.anchored(anchor(n).root).await.unwrap();
        assert_eq!(found.map(|r| r.anchor), Some(anchor(n)), "anchor {n}");
    }
    let events = ledger
        .events(0, ledger.head().await.unwrap())
        .await
        .unwrap();
    assert_eq!(sequences(&events), (0..count).collect::<Vec<_>>());
    // And the chain goes on.
    ledger.anchor(&anchor(count)).await.unwrap();
    assert_eq!(ledger.anchor_count().await.unwrap(), count + 1);
}

#[tokio::test]
async fn anvil_follower_resumes_across_a_node_restart() {
    let mut fixture = common::anvil().await;
    let ledger = fixture.ledger.clone();
    ledger.grant_role(Role::Anchorer, address(0)).await.unwrap();
    let mut follower = EventFollower::from_deployment(ledger.clone());
    for n in 0..3 {
        ledger.anchor(&anchor(n)).await.unwrap();
    }
    let mut seen = follower.poll().await.unwrap();
    for n in 3..5 {
        ledger.anchor(&anchor(n)).await.unwrap();
    }
    let cursor: Cursor = follower.cursor();

    fixture.node.stop().await.unwrap();
    // The node is down: the poll fails and the cursor stays.
    assert!(matches!(
        follower.poll().await,
        Err(Error::Backend(BackendError::Unreachable(_)))
    ));
    assert_eq!(follower.cursor(), cursor);

    fixture.node.restart().await.unwrap();
    // A fresh connection (as after a collector restart), resuming from the saved cursor.
    let backend = RpcBackend::connect(&fixture.node.url(), signer(0)).unwrap();
    let ledger = Ledger::new(backend, *ledger.suite());
    assert_eq!(
        ledger.anchor_count().await.unwrap(),
        5,
        "anvil kept its state"
    );
    ledger.anchor(&anchor(5)).await.unwrap();
    let mut resumed = EventFollower::new(ledger.clone(), cursor);
    let after_restart = resumed.poll().await.unwrap();
    // The old follower, whose HTTP connection broke, reconnects by itself and also
    // picks up exactly where it was.
    assert_eq!(sequences(&follower.poll().await.unwrap()), vec![3, 4, 5]);
    seen.extend(after_restart);
    assert_eq!(sequences(&seen), vec![0, 1, 2, 3, 4, 5]);
    assert!(resumed.poll().await.unwrap().is_empty());
    assert_eq!(ledger.backend().account(), address(0));
}
