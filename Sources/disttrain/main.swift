// The `disttrain` command line: parses flags, maps them onto library configs, reports errors as one line.
// Exit codes: ExitPolicy below, the one place they are decided. `--config FILE.yaml` of every subcommand is expanded
// into flags here, before parsing (ConfigFile.swift).
import ArgumentParser
import Foundation
import Model      // ComputeThreads.betterBLASCoretype: the re-exec below
import Tokenizers // TokenizerError: its exit code in ExitPolicy
import Training

struct Disttrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disttrain",
        abstract: "Fine-tune Hugging Face transformer models data-parallel over MPI on CPU clusters.",
        discussion: """
        Run one process for debugging, or the same command under mpirun for data parallelism:
          disttrain train --model models/all-MiniLM-L6-v2 \\
              --train-file data/sms-spam/train.jsonl \\
              --eval-file data/sms-spam/test.jsonl --output-dir runs/spam
        The same flags under mpirun (--batch-size stays the global batch):
          mpirun -n 2 disttrain train ...
        A YAML file of flag values (keys are flag names; flags on the command line win):
          disttrain train --config run.yaml --learning-rate 1e-4
        Then score and inspect the result:
          disttrain eval --model runs/spam --eval-file data/sms-spam/test.jsonl
          disttrain inspect runs/spam/checkpoint-100
        """,
        version: trainerVersion,   // defined once (Training/Checkpoint.swift); checkpoints record the same string
        subcommands: [Train.self, Eval.self, Predict.self, Generate.self, Inspect.self, Tokenize.self, Merge.self,
                      Bench.self, Plan.self])
}

/// OpenBLAS chose its generic kernels on a CPU it does not know (ComputeThreads.betterBLASCoretype): start this same
/// command again with OPENBLAS_CORETYPE naming kernels this CPU runs, before anything else (MPI included). execv keeps
/// the process id, arguments and environment, so mpirun and srun see the same rank. If it fails, carry on as we are.
/// It executes the binary's own path, which /proc/self/exe links to: the kernel names the new image (comm: what ps,
/// top, pgrep -x and killall match) after the last component of the path given to execv, and "/proc/self/exe" named
/// every process "exe". That link itself is the fallback (the file was moved or deleted since this process started).
func reexecWithBetterBLASKernels() {
    guard let core = ComputeThreads.betterBLASCoretype(environment: ProcessInfo.processInfo.environment) else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        _ = execv(path, CommandLine.unsafeArgv)
    }
    _ = execv("/proc/self/exe", CommandLine.unsafeArgv)
    unsetenv("OPENBLAS_CORETYPE")
}

/// The exit-code policy of every command, in one place. Commands throw; this decides the code and the one line.
///   0  success (and --help, --version)
///   1  runtime errors: unreadable or malformed files, failed collectives, a checkpoint that does not verify
///   2  usage errors: bad flags or values, a bad --config file, a flag that does not apply (TrainingError(exitCode: 2))
///   75 preempted: a signal stopped training after a complete checkpoint; resubmit the same command (EX_TEMPFAIL)
/// Under mpirun, errors that every rank sees alike end MPI cleanly with these codes; one rank's error aborts the job
/// with its code through MPI (TrainCommand, EvalCommand), and mpirun reports it.
enum ExitPolicy {
    static let success: Int32 = 0
    static let runtime: Int32 = 1
    static let usage: Int32 = 2
    static let preempted: Int32 = Preemption.exitCode

    /// The exit code of an error thrown by a command (ArgumentParser's own errors aside).
    static func code(for error: Error) -> Int32 {
        switch error {
        case let e as TrainingError: return e.exitCode
        case let e as ExitCode: return e.rawValue
        case is PreemptedError: return preempted
        default: return runtime
        }
    }

    /// The stderr line for an error thrown by a command (nil: already reported, as by `throw ExitCode`).
    static func line(for error: Error) -> String? {
        switch error {
        case let e as TrainingError: return "error: \(e.message)"
        case is ExitCode: return nil
        case let e as PreemptedError: return "\(e)"
        case let e as TokenizerError: return "error: \(e.description)"
        default: return "error: \(error)"
        }
    }
}

/// Runs the root command with the exit-code policy and never prints a crash trace for user errors.
func runMain() -> Never {
    do {
        let args = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst()))
        var command = try Disttrain.parseAsRoot(args)
        try command.run()
        exit(ExitPolicy.success)
    } catch let error where error is TrainingError || error is ExitCode || error is PreemptedError || error is TokenizerError {
        if let line = ExitPolicy.line(for: error) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        exit(ExitPolicy.code(for: error))
    } catch {
        let code = Disttrain.exitCode(for: error)
        if code == .success {
            Disttrain.exit(withError: error)  // --help, --version
        }
        if code == .validationFailure {
            // The error line first; ArgumentParser's long usage line is dropped (the help pointer stays).
            var lines: [String] = []
            for l in Disttrain.fullMessage(for: error).split(separator: "\n") where !l.hasPrefix("Usage:") {
                // ArgumentParser lists six or more allowed values one a line ("  - auto"): kept on the error line.
                if l.hasPrefix("  - "), let last = lines.last {
                    lines[lines.count - 1] = last + (last.hasSuffix(":") ? " " : ", ") + l.dropFirst(4)
                } else {
                    lines.append(String(l))
                }
            }
            FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            exit(ExitPolicy.usage)
        }
        FileHandle.standardError.write(Data(((ExitPolicy.line(for: error) ?? "error: \(error)") + "\n").utf8))
        exit(ExitPolicy.code(for: error))
    }
}

reexecWithBetterBLASKernels()
runMain()
