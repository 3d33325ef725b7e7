import Foundation
import DiscoCore

// Checks of a run's JSON files (a checkpoint's state.json, the run's config.json) when they are
// read back: every field's presence and type first, then its range, so that a hand-edited or
// damaged file is refused with the field named instead of crashing, hanging or training on garbage.

/// Field-by-field type checks of JSON (as JSONSerialization returns it) against a Codable value.
/// JSONDecoder names no field when a number does not fit its type (`"iteration": 4.5`,
/// `"seed": -1`, `"startingRate": 1e39`); this does, and names missing fields.
enum JSONFields {
    /// The first field of `json` that is missing or not of the type of the same field in `template`
    /// (a value of the type the JSON decodes to), as a phrase naming the field; nil if none.
    static func typeProblem(_ json: Any?, like template: Any, path: String) -> String? {
        let field = path.isEmpty ? "the top level" : "field '\(path)'"
        guard let json else { return "\(field) is missing" }
        if json is NSNull { return "\(field) is null" }
        switch template {
        case is Int:
            guard let n = json as? NSNumber, n as? Int != nil else { return "\(field) is \(show(json)); it must be an integer" }
        case is UInt64:
            guard let n = json as? NSNumber, n as? UInt64 != nil else { return "\(field) is \(show(json)); it must be an integer >= 0" }
        case is Float:
            guard let n = json as? NSNumber else { return "\(field) is \(show(json)); it must be a number" }
            let d = n.doubleValue, f = Float(d)
            guard f.isFinite, f != 0 || d == 0 else { return "\(field) is \(show(json)); it does not fit a 32-bit float" }
        case is String:
            guard json is String else { return "\(field) is \(show(json)); it must be a string" }
        case is [String: Int]:
            return integerMapProblem(json, path: path)
        case let r as any RawRepresentable:
            // Enums: the type of the raw value here; the decoder names the field of an unknown case.
            return typeProblem(json, like: r.rawValue, path: path)
        default:
            let children = Mirror(reflecting: template).children
            guard !children.isEmpty else { return nil }
            guard let obj = json as? [String: Any] else { return "\(field) is \(show(json)); it must be an object" }
            let defaulted = (template as? TrainConfig).map { _ in TrainConfig.defaultedFields }
                ?? (template as? Checkpoint.State).map { _ in ["data"] } ?? []
            for child in children {
                guard let label = child.label else { continue }
                if obj[label] == nil && defaulted.contains(label) { continue }  // an older file: the default
                let sub = path.isEmpty ? label : path + "." + label
                if let p = typeProblem(obj[label], like: child.value, path: sub) { return p }
            }
        }
        return nil
    }

    /// The first problem of a JSON object whose values must all be integers.
    static func integerMapProblem(_ json: Any?, path: String) -> String? {
        guard let json else { return "field '\(path)' is missing" }
        guard let obj = json as? [String: Any] else { return "field '\(path)' is \(show(json)); it must be an object of integers" }
        for k in obj.keys.sorted() {
            if let p = typeProblem(obj[k], like: 0, path: path + "." + k) { return p }
        }
        return nil
    }

    /// A short rendering of a JSON value for a message.
    static func show(_ json: Any) -> String {
        if let s = json as? String { return "\"\(s.prefix(40))\(s.count > 40 ? "..." : "")\"" }
        if json is [String: Any] { return "an object" }
        if json is [Any] { return "a list" }
        if json is NSNull { return "null" }
        return "\(json)".count > 40 ? String("\(json)".prefix(40)) + "..." : "\(json)"
    }

    /// A DecodingError as a phrase naming its field.
    static func describe(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ keys: [CodingKey]) -> String { keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case .keyNotFound(let key, let c): return "field '\(path(c.codingPath + [key]))' is missing"
        case .typeMismatch(let type, let c): return "field '\(path(c.codingPath))' is not a \(type) (\(c.debugDescription))"
        case .valueNotFound(let type, let c): return "field '\(path(c.codingPath))' is null; it must be a \(type)"
        case .dataCorrupted(let c):
            return c.codingPath.isEmpty ? "not valid JSON (\(c.debugDescription))" : "field '\(path(c.codingPath))': \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// Decodes `T` from JSON data after checking every field's presence and type against `template`.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, like template: T) throws -> T {
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data) } catch {
            throw ValidationProblem("not valid JSON (\(error.localizedDescription))")
        }
        guard let obj = json as? [String: Any] else { throw ValidationProblem("not a JSON object") }
        if let p = typeProblem(obj, like: template, path: "") { throw ValidationProblem(p) }
        do { return try JSONDecoder().decode(T.self, from: data) } catch { throw ValidationProblem(describe(error)) }
    }
}

struct ValidationProblem: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension TrainConfig {
    /// What is wrong with these settings, one phrase per field (named as in the JSON files, under
    /// `prefix`); empty when they describe a run disco can train.
    public func problems(prefix: String = "") -> [String] {
        var out: [String] = []
        func need(_ ok: Bool, _ field: String, _ value: Any, _ rule: String) {
            if !ok { out.append("field '\(prefix)\(field)' is \(value); it must be \(rule)") }
        }
        func unit(_ x: Float) -> Bool { x.isFinite && x >= 0 && x <= 1 }
        need(DiscoGANModels.supportedSizes.contains(size), "size", size,
             "one of \(DiscoGANModels.supportedSizes.map(String.init).joined(separator: ", "))")
        need(channels == 1 || channels == 3, "channels", channels, "1 or 3")
        need(batch >= 2 && batch <= TrainConfig.maxBatch, "batch", batch, "in 2...\(TrainConfig.maxBatch)")
        need(iterations >= 1, "iterations", iterations, "at least 1")
        need(adam.learningRate.isFinite && adam.learningRate > 0 && adam.learningRate < 1, "adam.learningRate", adam.learningRate, "in (0, 1)")
        need(adam.beta1.isFinite && adam.beta1 >= 0 && adam.beta1 < 1, "adam.beta1", adam.beta1, "in [0, 1)")
        need(adam.beta2.isFinite && adam.beta2 >= 0 && adam.beta2 < 1, "adam.beta2", adam.beta2, "in [0, 1)")
        need(adam.eps.isFinite && adam.eps >= 0, "adam.eps", adam.eps, "a finite number >= 0")
        need(adam.weightDecay.isFinite && adam.weightDecay >= 0, "adam.weightDecay", adam.weightDecay, "a finite number >= 0")
        need(curriculumIterations >= 0, "curriculumIterations", curriculumIterations, ">= 0")
        need(unit(startingRate), "startingRate", startingRate, "in [0, 1]")
        need(unit(defaultRate), "defaultRate", defaultRate, "in [0, 1]")
        need(updateInterval >= 2, "updateInterval", updateInterval, "at least 2")
        need(ganWeight.isFinite && ganWeight >= 0, "ganWeight", ganWeight, "a finite number >= 0")
        need(fmWeight.isFinite && fmWeight >= 0, "fmWeight", fmWeight, "a finite number >= 0")
        need(saveEvery >= 1, "saveEvery", saveEvery, "at least 1")
        need(sampleEvery >= 1, "sampleEvery", sampleEvery, "at least 1")
        need(logEvery >= 1, "logEvery", logEvery, "at least 1")
        need(decayFrom == -1 || (0..<iterations).contains(decayFrom), "decayFrom", decayFrom,
             "-1 (a constant learning rate) or in 0...\(iterations - 1) (below iterations, \(iterations))")
        need((0...TrainConfig.maxPoolSize).contains(poolSize), "poolSize", poolSize, "in 0...\(TrainConfig.maxPoolSize)")
        need(identityWeight.isFinite && identityWeight >= 0, "identityWeight", identityWeight, "a finite number >= 0")
        need(loadSize == 0 || (size...TrainConfig.maxLoadSize).contains(loadSize), "loadSize", loadSize,
             "0 (the size) or in \(size)...\(TrainConfig.maxLoadSize) (at least the size, \(size))")
        need(keep >= 0, "keep", keep, ">= 0 (0 keeps every checkpoint)")
        return out
    }

    /// Reads and checks a run's config.json (or any file holding one TrainConfig).
    public static func read(file: String) throws -> TrainConfig {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw Checkpoint.Error("\(file): missing or unreadable")
        }
        let fix = "fix it, or delete it (disco writes it again from the command line and the checkpoint)"
        let config: TrainConfig
        do { config = try JSONFields.decode(TrainConfig.self, from: data, like: TrainConfig()) } catch {
            throw Checkpoint.Error("\(file): \(error); \(fix)")
        }
        let problems = config.problems()
        guard problems.isEmpty else { throw Checkpoint.Error("\(file): \(problems.joined(separator: "; ")); \(fix)") }
        return config
    }
}

extension Checkpoint.State {
    /// The Adam step count of each network after `iteration` iterations of `config`'s schedule
    /// (a D step on iterations i with i % updateInterval == 0, G steps on the others; networks a
    /// variant does not train stay at 0).
    public static func expectedAdamSteps(iteration: Int, config: TrainConfig) -> [String: Int] {
        let u = config.updateInterval
        let d = iteration / u + (iteration % u == 0 ? 0 : 1), g = iteration - d
        return ["G_AB": g, "G_BA": config.model == .gan ? 0 : g, "D_A": config.model == .discogan ? d : 0, "D_B": d]
    }

    /// What is wrong with this state (one phrase per field); empty when it is consistent. The
    /// loader's fields are checked by the batch source that restores them.
    public func problems() -> [String] {
        var out = config.problems(prefix: "config.")
        guard out.isEmpty else { return out }
        guard iteration >= 0 && iteration <= config.iterations else {
            return ["field 'iteration' is \(iteration); it must be in 0...\(config.iterations) (config.iterations)"]
        }
        let expected = Self.expectedAdamSteps(iteration: iteration, config: config)
        for name in adamSteps.keys.sorted() where expected[name] == nil {
            out.append("field 'adamSteps.\(name)' names no network of disco (G_AB, G_BA, D_A, D_B)")
        }
        for name in expected.keys.sorted() {
            guard let got = adamSteps[name] else { out.append("field 'adamSteps.\(name)' is missing"); continue }
            if got != expected[name]! {
                out.append("field 'adamSteps.\(name)' is \(got); after \(iteration) iterations of a \(config.model.rawValue) run (a D step every \(config.updateInterval)) it must be \(expected[name]!)")
            }
        }
        return out
    }
}

extension TrainConfig {
    /// The settings that shape a run's results, each with its field (as in the JSON files), the
    /// option that sets it and its value as text. All the others (`iterations`, the save, sample
    /// and log intervals and `keep`) change no result of the iterations run so far, so a resumed run may
    /// change them.
    public func resultSettings() -> [(field: String, option: String, value: String)] {
        [("size", "--size", "\(size)"), ("channels", "--channels", "\(channels)"), ("batch", "--batch", "\(batch)"),
         ("model", "--model", model.rawValue), ("loss", "--loss", loss.rawValue), ("recon", "--recon", recon.rawValue),
         ("adam.learningRate", "--lr", "\(adam.learningRate)"), ("adam.beta1", "--beta1", "\(adam.beta1)"),
         ("adam.beta2", "--beta2", "\(adam.beta2)"), ("adam.eps", "Adam eps", "\(adam.eps)"),
         ("adam.weightDecay", "--weight-decay", "\(adam.weightDecay)"),
         ("curriculumIterations", "--curriculum", "\(curriculumIterations)"),
         ("startingRate", "--starting-rate", "\(startingRate)"), ("defaultRate", "--default-rate", "\(defaultRate)"),
         ("updateInterval", "--update-interval", "\(updateInterval)"),
         ("ganWeight", "GAN weight", "\(ganWeight)"), ("fmWeight", "feature-matching weight", "\(fmWeight)"),
         ("seed", "--seed", "\(seed)"), ("decayFrom", "--decay-from", decayFrom < 0 ? "none" : "\(decayFrom)"),
         ("poolSize", "--pool-size", "\(poolSize)"), ("identityWeight", "--identity", "\(identityWeight)"),
         ("loadSize", "--load-size", "\(loadSize == 0 ? size : loadSize)"), ("flip", "--flip/--no-flip", flip ? "flip" : "no flip"),
         ("bf16", "--bf16", bf16 ? "on" : "off"),
         // Without test folders --keep-best holds images out of training.
         ("keepBest", "--keep-best", keepBest ? "on" : "off")]
    }

    /// The result settings in which `self` differs from `run`, as "--batch 16 (the run has 64)".
    public func changedResultSettings(from run: TrainConfig) -> [String] {
        zip(resultSettings(), run.resultSettings()).compactMap { new, old in
            new.value == old.value ? nil : "\(new.option) \(new.value) (the run has \(old.value))"
        }
    }
}

extension Checkpoint {
    /// Before `run` resumes from `checkpoint` (whose state is `state`) with `config`: `config` must
    /// hold the checkpoint's result settings (see `TrainConfig.resultSettings`), and so must the
    /// run's config.json, when present, which must also be valid. Each differing setting is listed.
    public static func checkResume(config: TrainConfig, state: State, run: String, checkpoint: String) throws {
        let changed = config.changedResultSettings(from: state.config)
        guard changed.isEmpty else {
            throw Error("\(run): cannot resume with settings other than the run's (saved in \(checkpoint)/state.json): \(changed.joined(separator: ", ")); give the run's values (--iterations, --keep and the save, sample and log intervals may change), or start a new run with another --out")
        }
        let file = run + "/config.json"
        if FileManager.default.fileExists(atPath: file) {
            let edited = try TrainConfig.read(file: file).changedResultSettings(from: state.config)
            guard edited.isEmpty else {
                throw Error("\(file): its settings differ from those of the checkpoint \(checkpoint): \(edited.joined(separator: ", ")); it was edited: restore it, or delete it (disco writes it again)")
            }
        }
    }
}
