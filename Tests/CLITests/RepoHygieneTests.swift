// RepoHygieneTests (issue 21): scripts and docs work on any machine. No absolute path of a development machine
// (/work/..., /root/..., /home/...) and no package registry's web address appears in the tracked files: scripts
// default to the repository's own folders and `mktemp -d`, and packages are fetched through pip, never by URL.
// The README stays a start page (at most 120 lines) and no prose paragraph of README.md or docs/*.md runs over
// 6 lines (MarkdownParagraphs below says what counts).
import Foundation
import XCTest

final class RepoHygieneTests: XCTestCase {
    func testNoDevelopmentMachinePathOrRegistryAddressIsTracked() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/git"),
              FileManager.default.fileExists(atPath: CLI.repoRoot.appendingPathComponent(".git").path) else {
            throw XCTSkip("not a git checkout")
        }
        let pattern = #"(^|[^A-Za-z0-9_.~-])/(work|root|home)/|pypi\.org|pythonhosted\.org|registry\.npmjs\.org|crates\.io/api|proxy\.golang\.org"#
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", CLI.repoRoot.path, "grep", "-nIE", pattern, "--", ".", ":!Tests/CLITests/RepoHygieneTests.swift"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let hits = String(decoding: data, as: UTF8.self).split(separator: "\n").map { String($0.prefix(200)) }
        XCTAssertEqual(p.terminationStatus, 1, "git grep exits 1 when nothing matches; found:\n\(hits.joined(separator: "\n"))")
        XCTAssertEqual(hits, [])
    }

    func testReadmeIsAtMost120Lines() throws {
        let text = try String(contentsOf: CLI.repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = MarkdownParagraphs.lines(text)
        XCTAssertLessThanOrEqual(lines.count, 120, "README.md has \(lines.count) lines: move detail to docs/")
    }

    func testNoProseParagraphOfReadmeDocsOrExamplesIsLongerThanSixLines() throws {
        let docs = CLI.repoRoot.appendingPathComponent("docs")
        let pages = try FileManager.default.contentsOfDirectory(atPath: docs.path)
            .filter { $0.hasSuffix(".md") }.sorted().map { "docs/" + $0 }
        XCTAssertTrue(pages.contains("docs/performance.md"), "docs/ not found under \(CLI.repoRoot.path)")
        let examples = try FileManager.default.contentsOfDirectory(atPath: CLI.repoRoot.appendingPathComponent("examples").path)
            .sorted().map { "examples/\($0)/README.md" }
            .filter { FileManager.default.fileExists(atPath: CLI.repoRoot.appendingPathComponent($0).path) }
        XCTAssertGreaterThanOrEqual(examples.count, 6, "examples/*/README.md not found")
        let others = ["cluster/emulate/README.md", "bench/README.md", "data/README.md"]
        var long: [String] = []
        for page in ["README.md"] + pages + examples + others {
            let text = try String(contentsOf: CLI.repoRoot.appendingPathComponent(page), encoding: .utf8)
            for p in MarkdownParagraphs.prose(text) where p.lineCount > 6 {
                long.append("\(page):\(p.firstLine): \(p.lineCount) lines")
            }
        }
        XCTAssertEqual(long, [], "split or tighten these paragraphs (at most 6 lines each):\n\(long.joined(separator: "\n"))")
    }

    func testParagraphCounterSkipsFencesTablesHeadingsAndCountsListItemsSeparately() {
        let text = """
        # Title
        one
        two
        three

        ```
        a
        b
        c
        d
        e
        f
        g
        ```
        | a | b |
        |---|---|
        | 1 | 2 |
        - item one
          continued
        - item two
        1. numbered
        after the list, a lazy continuation of the numbered item
        seven
        """
        let ps = MarkdownParagraphs.prose(text)
        XCTAssertEqual(ps.map(\.firstLine), [2, 18, 20, 21])
        XCTAssertEqual(ps.map(\.lineCount), [3, 2, 1, 3])
        let tooLong = (1...7).map { "line \($0)" }.joined(separator: "\n")
        XCTAssertEqual(MarkdownParagraphs.prose(tooLong).map(\.lineCount), [7])
    }
}

/// Prose paragraphs of a Markdown page: runs of consecutive non-blank lines outside ``` fences that are not table
/// rows (`|`) or headings (`#`). A list item (`- `, `* `, `1. `) starts a unit of its own, and its continuation
/// lines count with it, so a list is measured per item.
enum MarkdownParagraphs {
    struct Paragraph: Equatable { var firstLine: Int; var lineCount: Int }

    static func lines(_ text: String) -> [Substring] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    static func prose(_ text: String) -> [Paragraph] {
        var result: [Paragraph] = []
        var current: Paragraph?
        var inFence = false
        func close() {
            if let c = current { result.append(c) }
            current = nil
        }
        for (index, raw) in lines(text).enumerated() {
            let line = raw.drop(while: { $0 == " " || $0 == "\t" })
            if line.hasPrefix("```") {
                close()
                inFence.toggle()
                continue
            }
            if inFence { continue }
            if line.isEmpty || line.hasPrefix("|") || line.hasPrefix("#") {
                close()
                continue
            }
            if isListItem(line) {
                close()
                current = Paragraph(firstLine: index + 1, lineCount: 1)
            } else if current != nil {
                current!.lineCount += 1
            } else {
                current = Paragraph(firstLine: index + 1, lineCount: 1)
            }
        }
        close()
        return result
    }

    private static func isListItem(_ line: Substring) -> Bool {
        if line.hasPrefix("- ") || line.hasPrefix("* ") || line.hasPrefix("+ ") { return true }
        let digits = line.prefix(while: { $0.isASCII && $0.isNumber })
        return !digits.isEmpty && line.dropFirst(digits.count).hasPrefix(". ")
    }
}
