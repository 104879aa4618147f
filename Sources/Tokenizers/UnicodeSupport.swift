// UnicodeSupport: UTF-8 decoding and the character classes the pipelines test, over Unicode scalars.
// It is deliberately not grapheme-aware: Hugging Face `tokenizers` works on Rust `char`s (scalars), so
// Swift `Character`s would give different (and slower) answers.

/// Decodes the scalar starting at `i` of valid UTF-8 (the buffers come from Swift Strings, so validity holds).
@inline(__always)
func decodeScalar(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
    let b0 = UInt32(p[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(p[i + 1] & 0x3F), 2) }
    if b0 < 0xF0 {
        return ((b0 & 0x0F) << 12 | UInt32(p[i + 1] & 0x3F) << 6 | UInt32(p[i + 2] & 0x3F), 3)
    }
    return ((b0 & 0x07) << 18 | UInt32(p[i + 1] & 0x3F) << 12 | UInt32(p[i + 2] & 0x3F) << 6
            | UInt32(p[i + 3] & 0x3F), 4)
}

/// Appends the UTF-8 encoding of one scalar.
@inline(__always)
func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
    if v < 0x80 {
        out.append(UInt8(v))
    } else if v < 0x800 {
        out.append(UInt8(0xC0 | v >> 6)); out.append(UInt8(0x80 | v & 0x3F))
    } else if v < 0x10000 {
        out.append(UInt8(0xE0 | v >> 12)); out.append(UInt8(0x80 | (v >> 6) & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    } else {
        out.append(UInt8(0xF0 | v >> 18)); out.append(UInt8(0x80 | (v >> 12) & 0x3F))
        out.append(UInt8(0x80 | (v >> 6) & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
    }
}

@inline(__always)
func scalar(_ v: UInt32) -> Unicode.Scalar { Unicode.Scalar(v) ?? "\u{FFFD}" }

enum CharClass {
    /// `tokenizers`' BERT stages take general categories from the `unicode_categories` crate, whose tables are
    /// Unicode 8.0: a character assigned later has no category there (not punctuation, not a mark, not
    /// control/format). Probed against the wheel: U+2E42 (8.0) splits, U+2E43 (9.0) does not; U+08E3 (8.0) is
    /// stripped as Mn, U+08D4 (9.0) is kept; U+061C (6.3) is dropped as Cf, U+08E2 (9.0) is kept.
    /// Seven code points also changed category since 8.0; an exhaustive probe of U+0080...U+10FFFF ("a" + c +
    /// "b" through both implementations) found exactly these and no other difference.
    @inline(__always)
    static func bertCategory(_ s: Unicode.Scalar) -> Unicode.GeneralCategory {
        switch s.value {
        case 0x166D, 0x111C9: return .otherPunctuation
        case 0x1734, 0x1171E: return .nonspacingMark
        case 0x1885, 0x1886: return .otherLetter
        case 0xA9BD: return .spacingMark
        default: break
        }
        let props = s.properties
        guard let age = props.age, age.major < 8 || (age.major == 8 && age.minor == 0) else { return .unassigned }
        return props.generalCategory
    }

    /// Rust `char::is_whitespace` / Oniguruma `\s`: the Unicode White_Space property.
    @inline(__always)
    static func isWhitespace(_ v: UInt32) -> Bool {
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return scalar(v).properties.isWhitespace
    }

    /// BERT punctuation: ASCII symbol ranges 33-47, 58-64, 91-96, 123-126, plus general category P*.
    @inline(__always)
    static func isBertPunctuation(_ v: UInt32) -> Bool {
        if v < 0x80 {
            return (v >= 33 && v <= 47) || (v >= 58 && v <= 64) || (v >= 91 && v <= 96) || (v >= 123 && v <= 126)
        }
        switch bertCategory(scalar(v)) {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    /// `tokenizers`' `is_control` minus tab/CR/LF: general categories Cc, Cf, Cs, Co. Unassigned code points
    /// (Cn) are kept, as the library does (checked against the wheel: U+0378 and U+B75BB survive, U+E000 not).
    @inline(__always)
    static func isOther(_ v: UInt32) -> Bool {
        switch bertCategory(scalar(v)) {
        case .control, .format, .surrogate, .privateUse: return true
        default: return false
        }
    }

    /// The CJK ideograph blocks BERT isolates (the same ranges as `tokenizers`' `is_chinese_char`).
    @inline(__always)
    static func isChinese(_ v: UInt32) -> Bool {
        (v >= 0x4E00 && v <= 0x9FFF) || (v >= 0x3400 && v <= 0x4DBF) || (v >= 0x20000 && v <= 0x2A6DF)
            || (v >= 0x2A700 && v <= 0x2B73F) || (v >= 0x2B740 && v <= 0x2B81F) || (v >= 0x2B920 && v <= 0x2CEAF)
            || (v >= 0xF900 && v <= 0xFAFF) || (v >= 0x2F800 && v <= 0x2FA1F)
    }

    /// GPT-2 regex classes: `\p{L}`, `\p{N}`, `\s`, or anything else.
    enum RegexClass { case letter, number, space, other }

    @inline(__always)
    static func regexClass(_ v: UInt32) -> RegexClass {
        if v < 0x80 {
            let b = UInt8(v)
            if (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A { return .letter }
            if b >= 0x30 && b <= 0x39 { return .number }
            if b == 0x20 || (b >= 0x09 && b <= 0x0D) { return .space }
            return .other
        }
        let props = scalar(v).properties
        // The wheel's Oniguruma has Unicode 16.0 tables; Swift 6.3 has 17.0. An exhaustive probe of all code
        // points found exactly the 4,657 characters new in 17.0 classed differently (as "other" by the wheel).
        guard let age = props.age, age.major <= 16 else { return .other }
        switch props.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return props.isWhitespace ? .space : .other
        }
    }
}
