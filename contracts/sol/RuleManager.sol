// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Dec, Range, Verdict} from "./Types.sol";
import {IRule} from "./IRule.sol";
import {RangeRule} from "./RangeRule.sol";

/// @notice Keeps the rule contracts by rule id and which rule each device group follows.
///         Only accounts with RULE_ADMIN_ROLE change rules; every change is an event, so
///         collectors keep a replica by following this one contract.
contract RuleManager is AccessControl {
    /// @notice The role that registers rules, assigns them to groups and changes them.
    bytes32 public constant RULE_ADMIN_ROLE = keccak256("wardseal.RULE_ADMIN_ROLE");

    struct GroupRule {
        bool set;
        uint32 ruleId;
    }

    mapping(uint32 => address) private _rules;
    uint32[] private _ruleIds;
    mapping(uint32 => GroupRule) private _groupRules;
    uint32[] private _groups;

    /// @notice A rule contract was registered under `ruleId`.
    event RuleRegistered(uint32 indexed ruleId, address rule);
    /// @notice Group `group` now follows rule `ruleId`.
    event GroupRuleSet(uint32 indexed group, uint32 indexed ruleId);
    /// @notice Rule `ruleId` now allows `dataType` with this unit, ranges and rate.
    event TypeRuleSet(uint32 indexed ruleId, uint16 indexed dataType, string unit, Range[] ranges, uint32 maxPerMinute);
    /// @notice Rule `ruleId` no longer allows `dataType`.
    event TypeRuleRemoved(uint32 indexed ruleId, uint16 indexed dataType);

    /// @notice A rule is already registered under this id.
    error RuleAlreadyRegistered(uint32 ruleId);
    /// @notice No rule is registered under this id.
    error UnknownRule(uint32 ruleId);
    /// @notice The rule contract names another manager or another rule id.
    error RuleNotManaged(address rule);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(RULE_ADMIN_ROLE, admin);
    }

    /// @notice Registers `rule` (whose manager is this contract) under `ruleId`.
    function registerRule(uint32 ruleId, address rule) external onlyRole(RULE_ADMIN_ROLE) {
        if (_rules[ruleId] != address(0)) revert RuleAlreadyRegistered(ruleId);
        if (IRule(rule).manager() != address(this) || IRule(rule).ruleId() != ruleId) revert RuleNotManaged(rule);
        _rules[ruleId] = rule;
        _ruleIds.push(ruleId);
        emit RuleRegistered(ruleId, rule);
    }

    /// @notice Makes group `group` follow rule `ruleId`.
    function setGroupRule(uint32 group, uint32 ruleId) external onlyRole(RULE_ADMIN_ROLE) {
        if (_rules[ruleId] == address(0)) revert UnknownRule(ruleId);
        GroupRule storage g = _groupRules[group];
        if (!g.set) {
            g.set = true;
            _groups.push(group);
        }
        g.ruleId = ruleId;
        emit GroupRuleSet(group, ruleId);
    }

    /// @notice Sets what rule `ruleId` allows for `dataType` (see RangeRule.setTypeRule).
    function setTypeRule(uint32 ruleId, uint16 dataType, string calldata unit, Range[] calldata ranges, uint32 maxPerMinute)
        external
        onlyRole(RULE_ADMIN_ROLE)
    {
        RangeRule(_rule(ruleId)).setTypeRule(dataType, unit, ranges, maxPerMinute);
        emit TypeRuleSet(ruleId, dataType, unit, ranges, maxPerMinute);
    }

    /// @notice Stops rule `ruleId` from allowing `dataType`.
    function removeTypeRule(uint32 ruleId, uint16 dataType) external onlyRole(RULE_ADMIN_ROLE) {
        RangeRule(_rule(ruleId)).removeTypeRule(dataType);
        emit TypeRuleRemoved(ruleId, dataType);
    }

    /// @notice The rule contract registered under `ruleId` (zero if none).
    function ruleAddress(uint32 ruleId) external view returns (address) {
        return _rules[ruleId];
    }

    /// @notice Every registered rule id, in registration order.
    function ruleIds() external view returns (uint32[] memory) {
        return _ruleIds;
    }

    /// @notice The rule group `group` follows (`set` false: none).
    function groupRule(uint32 group) external view returns (bool set, uint32 ruleId) {
        GroupRule storage g = _groupRules[group];
        return (g.set, g.ruleId);
    }

    /// @notice Every group that has a rule, in the order they were first set.
    function groups() external view returns (uint32[] memory) {
        return _groups;
    }

    /// @notice Checks a reading against the rule of its group (see IRule.check).
    function check(uint32 group, uint16 dataType, string calldata unit, Dec[] calldata components, uint32 perMinute)
        external
        view
        returns (Verdict verdict, uint8 component)
    {
        GroupRule storage g = _groupRules[group];
        if (!g.set) return (Verdict.NoRuleForGroup, 0);
        return IRule(_rules[g.ruleId]).check(group, dataType, unit, components, perMinute);
    }

    function _rule(uint32 ruleId) private view returns (address rule) {
        rule = _rules[ruleId];
        if (rule == address(0)) revert UnknownRule(ruleId);
    }
}
