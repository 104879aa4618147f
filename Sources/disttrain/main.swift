// The `disttrain` command line: parses flags, maps them onto library configs, reports errors as one line.
// Exit codes: 0 success, 2 usage errors (bad flags or values, a bad --config file), 1 runtime errors (bad files,
// failed collectives). `train --config FILE.yaml` is expanded into flags here, before parsing (ConfigFile.swift).
import ArgumentParser
import Foundation
import Model
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
func reexecWithBetterBLASKernels() {
    guard let core = ComputeThreads.betterBLASCoretype(environment: ProcessInfo.processInfo.environment) else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    _ = execv("/proc/self/exe", CommandLine.unsafeArgv)
    unsetenv("OPENBLAS_CORETYPE")
}

/// Runs the root command with our exit-code policy and never prints a crash trace for user errors.
func runMain() -> Never {
    do {
        let args = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst()), for: Train.self, subcommand: "train")
        var command = try Disttrain.parseAsRoot(args)
        try command.run()
        exit(0)
    } catch let error as TrainingError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        exit(error.exitCode)
    } catch let error as ExitCode {
        exit(error.rawValue)
    } catch {
        let code = Disttrain.exitCode(for: error)
        if code == .success {
            Disttrain.exit(withError: error)  // --help, --version
        }
        if code == .validationFailure {
            // The error line first; ArgumentParser's long usage line is dropped (the help pointer stays).
            let lines = Disttrain.fullMessage(for: error).split(separator: "\n").filter { !$0.hasPrefix("Usage:") }
            FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            exit(2)
        }
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        exit(1)
    }
}

reexecWithBetterBLASKernels()
runMain()
