import Foundation
import DiscoCore

/// A trained GAN generator as the evaluation sees it (`disco gan eval`).
public protocol GANSampler {
    /// Class names (folder names) when the model is conditional, else nil.
    var classNames: [String]? { get }
    /// NHWC [count, 28, 28, 1] in [0, 1]; labels (one per image) only for conditional models.
    func sample(count: Int, labels: [Int]?, seed: UInt64) throws -> Tensor
}

/// What `GANEvaluation` measures.
///
/// The Fréchet distance is computed on the penultimate features (128 units) of disco's own
/// Fashion-MNIST classifier (`FashionClassifier`), between the real images and the samples. It is
/// *not* Inception FID: the features differ, and its values are not comparable with published FIDs.
public struct GANEvaluationResult {
    /// The classifier's classes (the label order of every per-class figure).
    public var classNames: [String]
    /// The classifier's accuracy on its full test set, as recorded when it was built (nil if unknown).
    public var classifierTestAccuracy: Double?
    /// Its accuracy on the real images given, measured now.
    public var classifierRealAccuracy: Double
    public var realCount: Int
    public var sampleCount: Int
    /// Fréchet distance between the real images' and the samples' classifier features.
    public var frechetDistance: Double

    /// Conditional models: the share of samples drawn for label k that the classifier calls k,
    /// overall and per class (indexed like `classNames`; nil for a class no sample was drawn for).
    public var labelAccuracy: Double?
    public var perClassLabelAccuracy: [Double?]?

    /// The samples' predicted-class histogram (counts, indexed like `classNames`), and its entropy
    /// in nats and as a fraction of log K (1 = all classes equally often; 0 = one class only:
    /// mode collapse). Reported for every evaluation; the headline figure for unconditional models.
    public var histogram: [Int]
    public var entropy: Double
    public var entropyFraction: Double

    public var conditional: Bool { labelAccuracy != nil }

    public static let frechetNote = "Fréchet distance on the 128 penultimate features of disco's own Fashion-MNIST classifier: not Inception FID, not comparable with published FIDs"

    /// One JSON object (keys in snake case).
    public var json: [String: Any] {
        var out: [String: Any] = [
            "classes": classNames, "classifier_real_accuracy": classifierRealAccuracy, "real_count": realCount,
            "sample_count": sampleCount, "frechet_distance": frechetDistance, "frechet_note": Self.frechetNote,
            "conditional": conditional, "class_histogram": Dictionary(uniqueKeysWithValues: zip(classNames, histogram)),
            "class_entropy_nats": entropy, "class_entropy_fraction_of_log_k": entropyFraction,
        ]
        if let a = classifierTestAccuracy { out["classifier_test_accuracy"] = a }
        if let a = labelAccuracy { out["label_accuracy"] = a }
        if let per = perClassLabelAccuracy {
            var m: [String: Any] = [:]
            for (name, v) in zip(classNames, per) { m[name] = v.map { $0 as Any } ?? NSNull() }
            out["label_accuracy_per_class"] = m
        }
        return out
    }

    /// The human-readable report, one figure per line.
    public var lines: [String] {
        var out: [String] = []
        let width = max(classNames.map(\.count).max() ?? 0, 12)
        func name(_ n: String) -> String { "  " + n + String(repeating: " ", count: width - n.count) }
        if let a = classifierTestAccuracy { out.append(String(format: "classifier test accuracy   %.2f%% (when built, full test set)", 100 * a)) }
        out.append(String(format: "classifier on --real       %.2f%% of %d images", 100 * classifierRealAccuracy, realCount))
        out.append(String(format: "Fréchet distance           %.3f  (%d samples vs %d real)", frechetDistance, sampleCount, realCount))
        out.append("  note: " + Self.frechetNote)
        if let a = labelAccuracy, let per = perClassLabelAccuracy {
            out.append(String(format: "label accuracy             %.2f%% (samples drawn for label k that the classifier calls k)", 100 * a))
            for (className, v) in zip(classNames, per) {
                if let v { out.append(name(className) + String(format: " %6.2f%%", 100 * v)) }
            }
        }
        out.append(String(format: "class entropy              %.4f nats = %.3f of log %d (1: every class equally often; 0: one class)",
                          entropy, entropyFraction, classNames.count))
        let total = max(histogram.reduce(0, +), 1)
        for (className, c) in zip(classNames, histogram) {
            out.append(name(className) + String(format: " %6d  %5.1f%%", c, 100 * Double(c) / Double(total)))
        }
        return out
    }
}

public enum GANEvaluation {
    public struct EvaluationError: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Draws `count` samples from `sampler` (conditional: label i % K for sample i, so every class
    /// gets count / K) and scores them against the labelled images under `real` (DIR/test of
    /// `disco data fashion-mnist classes`) with `classifier`.
    public static func evaluate(sampler: GANSampler, real: String, count: Int, seed: UInt64,
                                classifier: FashionClassifier) throws -> GANEvaluationResult {
        try evaluate(sampler: sampler, real: try EvalImages.load(labelledFolder: real, option: "--real"),
                     count: count, seed: seed, classifier: classifier)
    }

    public static func evaluate(sampler: GANSampler, real: EvalImages, count: Int, seed: UInt64,
                                classifier: FashionClassifier) throws -> GANEvaluationResult {
        guard count >= 2 else { throw EvaluationError("--count must be at least 2, got \(count)") }
        var labels: [Int]? = nil
        var names: [String] = []
        if let classes = sampler.classNames {
            guard !classes.isEmpty else { throw EvaluationError("the conditional model has no classes") }
            labels = (0..<count).map { $0 % classes.count }
            names = classes
        }
        let x = try sampler.sample(count: count, labels: labels, seed: seed)
        guard x.shape == [count, 28, 28, 1] else {
            throw EvaluationError("the model returned samples of shape \(x.shape), expected [\(count), 28, 28, 1]")
        }
        return try evaluate(samples: x, intendedLabels: labels.map { (names, $0) }, real: real, classifier: classifier)
    }

    /// Scores a folder of generated PNGs (e.g. from scripts/torch_gan.py): DIR/<class>/*.png, the
    /// class folders naming each sample's intended label (conditional), or images directly under
    /// DIR (unconditional).
    public static func evaluate(samplesFolder: String, real: String, classifier: FashionClassifier) throws -> GANEvaluationResult {
        let realImages = try EvalImages.load(labelledFolder: real, option: "--real")
        let samples = try EvalImages.classFolders(samplesFolder, option: "--samples").isEmpty
            ? try EvalImages.load(unlabelledFolder: samplesFolder, option: "--samples")
            : try EvalImages.load(labelledFolder: samplesFolder, option: "--samples")
        return try evaluate(samples: samples.images, intendedLabels: samples.labels.map { (samples.classNames, $0) },
                            real: realImages, classifier: classifier)
    }

    /// The scores of `samples` [N, 28, 28, 1] in [0, 1]; `intendedLabels` (the class names the
    /// labels index, and one label per sample) for conditional models. Class names are matched to
    /// the classifier's by name.
    public static func evaluate(samples: Tensor, intendedLabels: ([String], [Int])?, real: EvalImages,
                                classifier: FashionClassifier) throws -> GANEvaluationResult {
        let k = classifier.classNames.count
        guard samples.shape.count == 4, samples.shape.dropFirst() == [28, 28, 1], samples.shape[0] >= 2 else {
            throw EvaluationError("samples of shape \(samples.shape); expected at least 2 images of [28, 28, 1]")
        }
        guard samples.array.allSatisfy(\.isFinite) else { throw EvaluationError("the samples hold NaN or infinite values") }
        guard let realLabels = real.labels, real.count >= 2 else {
            throw EvaluationError("--real: need at least 2 labelled real images (DIR/test/<label>-<name>/*.png)")
        }
        func classifierIndex(_ names: [String], _ what: String) throws -> [Int] {
            try names.map { name in
                guard let i = classifier.classNames.firstIndex(of: name) else {
                    throw EvaluationError("\(what) class '\(name)' is not one of the classifier's classes (\(classifier.classNames.joined(separator: ", "))); name the class folders as `disco data fashion-mnist classes` does")
                }
                return i
            }
        }
        let realMap = try classifierIndex(real.classNames, "--real")

        let realOut = classifier.classify(real.images)
        let realCorrect = zip(realOut.labels, realLabels).filter { $0 == realMap[$1] }.count
        let fake = classifier.classify(samples)
        let n = samples.shape[0]
        let distance = try Frechet.distance(FeatureStatistics(features: realOut.features), FeatureStatistics(features: fake.features))

        var histogram = [Int](repeating: 0, count: k)
        for l in fake.labels { histogram[l] += 1 }
        var entropy = 0.0
        for c in histogram where c > 0 { let p = Double(c) / Double(n); entropy -= p * log(p) }

        var labelAccuracy: Double? = nil, perClass: [Double?]? = nil
        if let (names, labels) = intendedLabels {
            precondition(labels.count == n, "GANEvaluation: \(labels.count) intended labels for \(n) samples")
            let map = try classifierIndex(names, "the samples'")
            var drawn = [Int](repeating: 0, count: k), hit = [Int](repeating: 0, count: k)
            for (want, got) in zip(labels, fake.labels) {
                let c = map[want]
                drawn[c] += 1
                if got == c { hit[c] += 1 }
            }
            labelAccuracy = Double(hit.reduce(0, +)) / Double(n)
            perClass = (0..<k).map { drawn[$0] > 0 ? Double(hit[$0]) / Double(drawn[$0]) : nil }
        }
        return GANEvaluationResult(classNames: classifier.classNames, classifierTestAccuracy: classifier.info?.testAccuracy,
                                   classifierRealAccuracy: Double(realCorrect) / Double(real.count), realCount: real.count,
                                   sampleCount: n, frechetDistance: distance, labelAccuracy: labelAccuracy,
                                   perClassLabelAccuracy: perClass, histogram: histogram, entropy: entropy,
                                   entropyFraction: entropy / log(Double(k)))
    }
}
