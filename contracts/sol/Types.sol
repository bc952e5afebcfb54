// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice An exact decimal: `mantissa × 10^-scale`, `scale` at most 18.
/// @dev Values are never floats. Two decimals compare exactly after both are brought to
///      the larger scale in int256 (an int128 times 10^18 fits with room to spare).
struct Dec {
    int128 mantissa;
    uint8 scale;
}

/// @notice An inclusive range `[min, max]`.
struct Range {
    Dec min;
    Dec max;
}

/// @notice The answer of a rule check. The numbering is part of the interface: the
///         native evaluator in wardseal-contracts returns the same numbers.
enum Verdict {
    Allowed, // 0: every check passed
    NoRuleForGroup, // 1: the group has no rule
    DataTypeNotAllowed, // 2: the rule does not allow this data type
    WrongUnit, // 3: the unit is not the one the rule fixes for the data type
    WrongComponentCount, // 4: the value has not as many components as the rule has ranges
    InvalidScale, // 5: a component has a scale above 18
    BelowMinimum, // 6: a component is below its range
    AboveMaximum, // 7: a component is above its range
    RateExceeded // 8: more readings in the last minute than the rule allows
}

/// @notice How a reading crosses an alarm limit: below or above its bound, strictly or
///         at the bound too (published bands are written both ways: NEWS2 "≤ 40", ADA "< 70").
///         The numbering is part of the interface.
enum Trigger {
    Below, // 0: value < bound
    AtOrBelow, // 1: value ≤ bound
    Above, // 2: value > bound
    AtOrAbove // 3: value ≥ bound
}

/// @notice An alarm priority after IEC 60601-1-8's terms; `None` only in answers ("no
///         alarm"), never in a stored limit. The numbering is part of the interface.
enum Priority {
    None, // 0: no alarm
    Low, // 1
    Medium, // 2
    High // 3: the critical tier (FHIR interpretation LL / HH)
}

/// @notice A clinical alarm limit on one value component: a reading that crosses it is
///         accepted and flagged with `priority`. Plausibility ranges refuse; these never do.
struct AlarmLimit {
    uint8 component;
    Trigger trigger;
    Priority priority;
    Dec bound;
}

// The largest scale a decimal may have.
uint8 constant MAX_SCALE = 18;

/// @notice -1, 0 or 1 as `a` is below, equal to or above `b`. Both scales must be ≤ 18.
function compareDec(Dec memory a, Dec memory b) pure returns (int8) {
    int256 x = int256(a.mantissa);
    int256 y = int256(b.mantissa);
    if (a.scale < b.scale) {
        x *= int256(10 ** uint256(b.scale - a.scale));
    } else if (b.scale < a.scale) {
        y *= int256(10 ** uint256(a.scale - b.scale));
    }
    if (x < y) return -1;
    if (x > y) return 1;
    return 0;
}

// The most value components a data type may have.
uint256 constant MAX_VALUE_COMPONENTS = 8;

// The most alarm limits one data type (or one patient's override of it) may hold.
uint256 constant MAX_ALARM_LIMITS = 16;

/// @notice Whether `limits` are valid for a value of `components` components: at most
///         MAX_ALARM_LIMITS, each on an existing component, with a priority, and a bound
///         of scale ≤ 18. Returns the index of the first invalid limit, or `limits.length`.
function firstInvalidLimit(AlarmLimit[] calldata limits, uint256 components) pure returns (uint256) {
    for (uint256 i = 0; i < limits.length; i++) {
        AlarmLimit calldata l = limits[i];
        if (l.component >= components || l.priority == Priority.None || l.bound.scale > MAX_SCALE) return i;
    }
    return limits.length;
}

/// @notice The crossed limit of highest priority (the first such in `limits` order), or
///         a limit with priority None when no limit is crossed. Components must have been
///         checked (scale ≤ 18) before; limits on components the value lacks are skipped.
function worstAlarm(AlarmLimit[] memory limits, Dec[] calldata components)
    pure
    returns (AlarmLimit memory worst)
{
    for (uint256 i = 0; i < limits.length; i++) {
        AlarmLimit memory l = limits[i];
        if (l.component >= components.length || l.priority <= worst.priority) continue;
        int8 c = compareDec(components[l.component], l.bound);
        bool crossed = (l.trigger == Trigger.Below && c < 0) || (l.trigger == Trigger.AtOrBelow && c <= 0)
            || (l.trigger == Trigger.Above && c > 0) || (l.trigger == Trigger.AtOrAbove && c >= 0);
        if (crossed) worst = l;
    }
}
