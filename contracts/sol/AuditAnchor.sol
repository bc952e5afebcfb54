// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @notice Merkle roots of collectors' decision logs and storage servers' access logs.
///         Only accounts with ANCHORER_ROLE (registered collectors and storage servers)
///         anchor; anyone reads. One anchor covers any number of log entries.
contract AuditAnchor is AccessControl {
    /// @notice The role of registered collectors and storage servers.
    bytes32 public constant ANCHORER_ROLE = keccak256("wardseal.ANCHORER_ROLE");

    struct Anchor {
        address anchorer;
        uint64 count;
        uint64 firstTime; // microseconds since the Unix epoch
        uint64 lastTime; // microseconds since the Unix epoch
        uint64 blockNumber;
        bytes32 logId;
    }

    mapping(bytes32 => Anchor) private _anchors;
    /// @notice How many roots were anchored.
    uint256 public anchorCount;

    /// @notice `anchorer` anchored `root` of `count` entries of log `logId`, written
    ///         between `firstTime` and `lastTime`; `sequence` counts anchors from 0.
    event Anchored(
        bytes32 indexed root,
        bytes32 indexed logId,
        address indexed anchorer,
        uint64 count,
        uint64 firstTime,
        uint64 lastTime,
        uint256 sequence
    );

    /// @notice The root is already anchored.
    error RootAlreadyAnchored(bytes32 root);
    /// @notice An anchor covers at least one entry.
    error EmptyAnchor();
    /// @notice The first time is after the last time.
    error TimeRangeReversed(uint64 firstTime, uint64 lastTime);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Anchors `root` of `count` entries of log `logId`.
    function anchor(bytes32 logId, bytes32 root, uint64 count, uint64 firstTime, uint64 lastTime)
        external
        onlyRole(ANCHORER_ROLE)
    {
        if (count == 0) revert EmptyAnchor();
        if (firstTime > lastTime) revert TimeRangeReversed(firstTime, lastTime);
        if (_anchors[root].anchorer != address(0)) revert RootAlreadyAnchored(root);
        _anchors[root] = Anchor({
            anchorer: msg.sender,
            count: count,
            firstTime: firstTime,
            lastTime: lastTime,
            blockNumber: uint64(block.number),
            logId: logId
        });
        emit Anchored(root, logId, msg.sender, count, firstTime, lastTime, anchorCount);
        anchorCount += 1;
    }

    /// @notice The anchor of `root` (anchorer zero: not anchored).
    function anchorOf(bytes32 root) external view returns (Anchor memory) {
        return _anchors[root];
    }
}
