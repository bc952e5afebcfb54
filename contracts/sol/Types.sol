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
