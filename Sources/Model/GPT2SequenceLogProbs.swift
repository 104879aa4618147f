// GPT2SequenceLogProbs.swift: what preference training (DPO) needs from GPT2LMHead beyond the causal-LM loss:
//   - per-row log-probabilities of the labelled tokens (the summed shifted NLL of each row, negated), from an
//     evaluation forward (`forward(batch, labels:, gradientScale: nil, …)`);
//   - a backward whose gradient scale differs per row: DPO's loss is a function of each sequence's summed
//     log-probability, so dLoss/dlogits of row b is w_b · (softmax − onehot) with a weight w_b known only after the
//     forward of every row. The head's logits are recomputed chunk by chunk from the saved ln_f output (the body's
//     activations are intact after an evaluation forward), then the body's backward runs as usual;
//     With a frozen head (LoRA) no recompute is needed: the unit-scale training forward leaves each row's input
//     gradient in place, and the rows are scaled before the body's backward;
//   - running a forward with the LoRA adapter switched off (the base model: DPO's reference under LoRA, as peft's
//     `disable_adapter()`), with no second copy of the weights;
//   - for on-line RL (GRPO/RLOO): per-token log-probabilities and entropies at a sampling temperature (TRL divides the
//     logits by it), and a backward whose scale differs per token (dLoss/dlogp of the clipped surrogate). Only the
//     labelled positions' logits are recomputed (gathered into chunks), so prompt and padding rows cost nothing.
// Deliberately not here: the DPO and GRPO losses and their data (Training/DPOTask.swift, GRPOObjective.swift).
import CKernels

extension GPT2LMHead {
    /// Log-probability of the labelled tokens of each row of the last forward (which had labels): Σ_t −nll[b, t],
    /// summed in Double over the counted positions, [B].
    public func rowLogProbs() -> [Double] {
        let B = body.lastB, T = body.lastT
        return (0..<B).map { b in
            var s = 0.0
            for t in 0..<T where targets[b * T + t] >= 0 { s -= Double(nll[b * T + t]) }
            return s
        }
    }

    /// Accumulates (+=) the gradients of Σ_b rowScales[b] · NLL_b, where NLL_b is row b's summed NLL of the last forward
    /// (run with labels and gradientScale nil; its activations must be untouched since). Zero the gradients before.
    /// The logits are recomputed at the labelled positions only (backward(tokenScales:)): prompt and padding cost nothing.
    public func backward(rowScales: [Float]) {
        let B = body.lastB, T = body.lastT
        precondition(rowScales.count == B, "one scale per row: \(rowScales.count) for \(B) rows")
        backward(tokenScales: (0..<(B * T)).map { rowScales[$0 / T] })
    }

    /// Whether the tied head's weight (wte) takes no gradient (a frozen base under LoRA): then `forward` with
    /// gradientScale 1 already gives every row's unit input gradient, and `backward(scalingRows:)` needs no recompute.
    public var headIsFrozen: Bool { !body.trains(body.wte) }

    /// For a frozen head only: after `forward(batch, labels:, gradientScale: 1, …)` (dLoss/d(ln_f output) of each row's
    /// summed NLL is in place), scales row b's input gradient by rowScales[b] and runs the body's backward: the
    /// gradients of Σ_b rowScales[b] · NLL_b, without recomputing the logits.
    public func backward(scalingRows rowScales: [Float]) {
        let B = body.lastB, T = body.lastT, C = config.hidden
        precondition(headIsFrozen, "backward(scalingRows:) needs a frozen LM head; use backward(rowScales:)")
        precondition(rowScales.count == B, "one scale per row: \(rowScales.count) for \(B) rows")
        for b in 0..<B {
            let p = body.dXf + b * T * C, s = rowScales[b]
            for i in 0..<(T * C) { p[i] *= s }
        }
        body.backward()
    }

    /// Runs `work` with the LoRA adapter (if any) switched off, so forwards use the base weights alone; the adapter is
    /// attached again afterwards. Only for forwards without gradients.
    public func withAdapterDisabled<R>(_ work: () throws -> R) rethrows -> R {
        let adapter = body.adapter, frozen = body.frozenBase
        body.adapter = nil
        body.frozenBase = true
        defer { body.adapter = adapter; body.frozenBase = frozen }
        return try work()
    }
}

// MARK: - Per-token log-probabilities, entropies and backward (GRPO / RLOO)

extension GPT2LMHead {
    /// Flat positions (b·T + t) of the last forward that have a label (the shifted target ≥ 0).
    func labelledPositions() -> [Int] {
        let n = body.lastB * body.lastT
        return (0..<n).filter { targets[$0] >= 0 }
    }

    /// log p(label) at every position of the last forward (which had labels; gradientScale nil), [B*T] with the same
    /// shift as `rowLogProbs()`: position b·T+t holds log softmax(logits[b, t] / temperature)[labels[b, t+1]]; 0 where
    /// the label is ignored. temperature 1 reads the forward's own values; others recompute the labelled rows.
    public func tokenLogProbs(temperature: Float = 1) -> [Float] {
        let n = body.lastB * body.lastT
        if temperature == 1 {
            return (0..<n).map { targets[$0] >= 0 ? -nll[$0] : 0 }
        }
        return logProbsAndEntropies(temperature: temperature, entropies: false).logps
    }

    /// An evaluation forward for per-token statistics only: the body, then log-probs (and entropies) at `temperature`
    /// of the labelled positions alone, in one pass over their logits — the full-vocabulary head over every position
    /// that `forward(labels:, gradientScale: nil)` computes (prompt and padding rows included) is skipped. Returns
    /// [B*T] arrays as tokenLogProbs / tokenEntropies (same shift; 0 where not labelled). `backward(tokenScales:)` may
    /// follow, as after `forward`. positionStats() and rowLogProbs() are not meaningful afterwards; tokenLogProbs(
    /// temperature: 1) is, when `temperature` was 1.
    public func forwardTokenStats(_ batch: TokenBatch, labels: [Int32], temperature: Float = 1, entropies: Bool = true,
                                  dropout: DropoutContext? = nil) -> (logps: [Float], entropies: [Float]) {
        let B = batch.batchSize, T = batch.seqLen, V = config.vocabSize
        precondition(labels.count == B * T, "labels [B*T]")
        body.forward(batch, dropout: dropout)
        for b in 0..<B {
            for t in 0..<T {
                var y: Int32 = -1
                if t + 1 < T, labels[b * T + t + 1] != -100 {
                    y = labels[b * T + t + 1]
                    precondition(y >= 0 && Int(y) < V, "label \(y) outside the vocabulary (use -100 to ignore a position)")
                }
                targets[b * T + t] = y
            }
        }
        let out = logProbsAndEntropies(temperature: temperature, entropies: entropies)
        for i in 0..<(B * T) { nll[i] = targets[i] >= 0 ? (temperature == 1 ? -out.logps[i] : .nan) : 0 }
        return out
    }

    /// Entropy of softmax(logits / temperature) at every labelled position of the last forward, [B*T], 0 elsewhere
    /// (TRL's per-token entropy, computed where TRL computes log-probs). Recomputes the labelled rows' logits.
    public func tokenEntropies(temperature: Float = 1) -> [Float] {
        logProbsAndEntropies(temperature: temperature, entropies: true).entropies
    }

    /// Both per-token log-probs and entropies in one recompute of the labelled rows (see the two above).
    public func logProbsAndEntropies(temperature: Float = 1, entropies: Bool = true) -> (logps: [Float], entropies: [Float]) {
        precondition(temperature > 0, "temperature must be > 0")
        let n = body.lastB * body.lastT, V = config.vocabSize
        let rows = labelledPositions()
        var lp = [Float](repeating: 0, count: n), en = [Float](repeating: 0, count: entropies ? n : 0)
        forEachLogitChunk(rows) { r0, R in
            for k in 0..<R { chunkTargets[k] = targets[rows[r0 + k]] }
            gr_logp_entropy(logitChunk, R, V, chunkTargets, 1 / temperature, chunkRow0, entropies ? chunkRow1 : nil)
            for k in 0..<R {
                lp[rows[r0 + k]] = chunkRow0[k]
                if entropies { en[rows[r0 + k]] = chunkRow1[k] }
            }
        }
        return (lp, en)
    }

    /// Accumulates (+=) the gradients of Σ_{b,t} tokenScales[b·T+t] · NLL[b, t], NLL = −log softmax(logits/temperature)
    /// [label] at the labelled positions of the last forward (run with labels and gradientScale nil; its activations
    /// untouched since). Positions without a label or with scale 0 contribute nothing (their logits are not recomputed).
    /// Works with a trainable tied head (wte gets its head share) and with a frozen one (LoRA). Zero gradients before.
    /// For GRPO pass tokenScales = −dLoss/dlogp.
    public func backward(tokenScales: [Float], temperature: Float = 1) {
        let n = body.lastB * body.lastT, V = config.vocabSize, C = config.hidden
        precondition(tokenScales.count == n, "one scale per position: \(tokenScales.count) for \(n)")
        precondition(temperature > 0, "temperature must be > 0")
        let rows = (0..<n).filter { targets[$0] >= 0 && tokenScales[$0] != 0 }
        body.dXf.update(repeating: 0, count: n * C)
        forEachLogitChunk(rows) { r0, R in
            for k in 0..<R { chunkTargets[k] = targets[rows[r0 + k]]; chunkRow0[k] = tokenScales[rows[r0 + k]] }
            gr_xent_grad_scaled(logitChunk, R, V, chunkTargets, 1 / temperature, chunkRow0)
            headBackwardChunk(rows, r0: r0, R: R)
        }
        body.backward()
    }
}

