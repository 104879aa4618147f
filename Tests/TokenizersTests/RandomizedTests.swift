// RandomizedTests: 10,000 seeded random Unicode strings (all planes, controls, combining marks, CJK, emoji,
// whitespace runs, literal special tokens, long runs up to a few hundred scalars). GPT-2 must round-trip every
// one exactly; BERT must return in-range ids. Both must finish (a hang would blow the time budget asserted).
import Foundation
import XCTest
import Tokenizers
import SplitMix

enum RandomText {
    static let fragments = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "<|endoftext|>", "'s", "'ll", "'RE", " '",
                            "\r\n", "  ", "\u{200D}", "\u{FEFF}", "\u{FFFD}", "e\u{301}", "\u{1F469}\u{200D}\u{1F4BB}",
                            "\u{1F1FA}\u{1F1F8}", "1\u{FE0F}\u{20E3}", "http://x.y/z?a=1", "##", "\u{0}", "\u{85}"]

    static func scalar(_ rng: inout SplitMix64) -> Unicode.Scalar {
        func pick(_ r: ClosedRange<UInt32>) -> Unicode.Scalar {
            Unicode.Scalar(UInt32.random(in: r, using: &rng)) ?? "?"
        }
        switch Int.random(in: 0..<14, using: &rng) {
        case 0, 1, 2: return pick(0x20...0x7E)                 // printable ASCII
        case 3: return pick(0x00...0x1F)                       // C0 controls, tab, CR, LF
        case 4: return pick(0x7F...0xFF)                       // DEL, C1 controls, Latin-1
        case 5: return pick(0x300...0x36F)                     // combining marks
        case 6: return pick(0x4E00...0x9FFF)                   // CJK
        case 7: return pick(0xAC00...0xD7A3)                   // Hangul syllables (NFD splits them)
        case 8: return pick(0x1F300...0x1FAFF)                 // emoji
        case 9: return [" ", "\u{A0}", "\u{2028}", "\u{3000}", "\t", "\n", "\u{2009}"].randomElement(using: &rng)!
        case 10: return pick(0x100...0x2FFF)                   // Latin ext, Greek, Cyrillic, Arabic, Indic...
        case 11: return pick(0xE000...0xFFFF)                  // private use, compatibility, specials
        case 12: return pick(0x10000...0x10FFFF)               // any supplementary plane (incl. unassigned)
        default:
            var v: UInt32
            repeat { v = UInt32.random(in: 0...0x10FFFF, using: &rng) } while (0xD800...0xDFFF).contains(v)
            return Unicode.Scalar(v)!
        }
    }

    static func string(_ rng: inout SplitMix64) -> String {
        var s = String.UnicodeScalarView()
        let long = Int.random(in: 0..<20, using: &rng) == 0
        let n = long ? Int.random(in: 100...400, using: &rng) : Int.random(in: 0...40, using: &rng)
        while s.count < n {
            switch Int.random(in: 0..<12, using: &rng) {
            case 0: s.append(contentsOf: fragments.randomElement(using: &rng)!.unicodeScalars)
            case 1:  // a run of one scalar (long words, long whitespace/punctuation runs)
                let u = scalar(&rng)
                for _ in 0..<Int.random(in: 2...150, using: &rng) { s.append(u) }
            default: s.append(scalar(&rng))
            }
        }
        return String(s)
    }
}

final class RandomizedTests: XCTestCase {
    func testTenThousandRandomStrings() throws {
        let gpt2 = try Fixtures.gpt2FromVocab()
        let bert = try Fixtures.bertFromJSON()
        var rng = SplitMix64(state: 20_261_122)
        let started = Date()
        var roundTripFailures: [String] = []
        var badIds = 0
        for _ in 0..<10_000 {
            let s = RandomText.string(&rng)
            let g = gpt2.encode(s)
            let back = gpt2.decode(g.ids)
            if Array(back.unicodeScalars) != Array(s.unicodeScalars) {
                roundTripFailures.append(s.unicodeScalars.map { String($0.value, radix: 16) }.joined(separator: " "))
            }
            let b = bert.encode(s)
            badIds += b.ids.filter { $0 < 0 || Int($0) >= bert.vocabSize }.count
            XCTAssertEqual(b.ids.count, b.tokens.count)
            XCTAssertEqual(b.ids.first, 101)
            XCTAssertEqual(b.ids.last, 102)
        }
        XCTAssert(roundTripFailures.isEmpty, "\(roundTripFailures.count) GPT-2 round trips failed; first (hex scalars):\n"
                  + roundTripFailures.prefix(3).joined(separator: "\n"))
        XCTAssertEqual(badIds, 0, "BERT produced out-of-range ids")
        // A generous bound even for a debug build on a loaded machine: a quadratic blow-up or a hang fails it.
        XCTAssertLessThan(Date().timeIntervalSince(started), 120)
    }
}
