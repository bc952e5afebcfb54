//! wardseal-contracts: the hospital's data rules, device registry, patients' consent and
//! audit anchors on Ethereum, and the [`Ledger`] the rest of wardseal uses to reach them.
//!
//! # Design
//!
//! - **Contracts** (`contracts/sol/`, Solidity 0.8.30 compiled by the pinned solc-js into
//!   the committed `contracts/artifacts/`): `RuleManager` (rule admins; group → rule id →
//!   rule contract; emits every rule change), `RangeRule` (per data type: unit, an
//!   inclusive range per value component, readings per minute), `DeviceRegistry` (EPC →
//!   group, rule, ward, active), `Consent` (a patient grants and revokes authorities) and
//!   `AuditAnchor` (registered anchorers anchor log roots). Roles come from OpenZeppelin's
//!   `AccessControl`; refusals are custom errors, decoded into [`ContractError`].
//! - **Values are exact**: a value is a `(mantissa, scale)` decimal ([`WideDecimal`], the
//!   contracts' `Dec`); no float anywhere. Blood pressure is checked per component
//!   (systolic, diastolic); a waveform block by its lowest and highest physical sample.
//! - **[`Ledger`]** encodes calls, decodes answers, reverts and events, over a
//!   [`Backend`]: [`EmbeddedBackend`] (revm in-process, persisted, the single-machine
//!   default) or [`RpcBackend`] (any JSON-RPC node: Besu QBFT, anvil).
//! - **[`LedgerLocation`]** opens the ledger the one way every program does: embedded
//!   or JSON-RPC, as an [`AccountKey`] read from a 0600 file, or read-only.
//! - **[`RuleBook`]** is the collector's native replica of the rules, followed by events
//!   through an [`EventFollower`]; it decides exactly as the contract's `check`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wardseal_contracts::Error> {
//! use wardseal_contracts::{
//!     CheckInput, EmbeddedChain, Ledger, Range, TypeRule, Verdict, WideDecimal,
//! };
//! let dir = tempfile::tempdir().map_err(|e| wardseal_contracts::BackendError::Storage {
//!     path: "tmp".into(),
//!     source: e,
//! })?;
//! let chain = EmbeddedChain::open(dir.path())?;
//! let admin = alloy::primitives::Address::repeat_byte(0x11);
//! let ledger = Ledger::deploy(chain.backend(admin)).await?;
//!
//! // Rule 7: heart rate (code 1) in /min, 30 to 220, at most 6 a minute; group 3 follows it.
//! ledger.create_rule(7).await?;
//! let range = Range::new(WideDecimal::parse("30")?, WideDecimal::parse("220")?)?;
//! ledger.set_type_rule(7, &TypeRule::new(1, "/min", vec![range], 6)?).await?;
//! ledger.set_group_rule(3, 7).await?;
//!
//! let reading = CheckInput {
//!     group: 3,
//!     data_type: 1,
//!     unit: "/min".into(),
//!     components: vec![WideDecimal::parse("72")?],
//!     per_minute: 1,
//! };
//! assert_eq!(ledger.check(&reading).await?.verdict, Verdict::Allowed);
//! # Ok(())
//! # }
//! ```

pub mod anvil;
pub mod backend;
pub mod bindings;
mod error;
pub mod evaluator;
pub mod follow;
mod ledger;
pub mod model;
pub mod open;

pub use backend::{AnyBackend, Backend, EmbeddedBackend, EmbeddedChain, RpcBackend};
pub use error::{AccountKeyError, BackendError, ContractError, Error, RuleError};
pub use evaluator::RuleBook;
pub use follow::{Cursor, EventFollower};
pub use ledger::Ledger;
pub use model::{
    Anchor, AnchorRecord, CheckInput, Decision, Device, EventPosition, LedgerEvent,
    PositionedEvent, Range, Role, Rule, Suite, TxOutcome, TypeRule, Verdict, WideDecimal,
};
pub use open::{AccountKey, LedgerAccount, LedgerLocation};
