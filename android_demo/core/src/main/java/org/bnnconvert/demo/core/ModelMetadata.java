package org.bnnconvert.demo.core;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The {@code bnnconvert} metadata of an exported model (schema version 1, see {@code
 * docs/metadata.md}): what the app needs to feed the model and read its output.
 */
public final class ModelMetadata {
    /** The newest schema version this code reads. */
    public static final int SCHEMA_VERSION = 1;
    /** Name of the model's metadata entry holding the JSON. */
    public static final String ENTRY_NAME = "bnnconvert";

    public final int schemaVersion;
    public final String name;
    public final String version;
    public final String description;
    public final String producerVersion;
    public final String target;
    public final int height;
    public final int width;
    public final int channels;
    public final String inputDtype;
    /** How to feed the input: float32, or int8 with its scale and zero point. */
    public final TensorQuantization inputQuantization;
    /** Null when the model was exported without {@code --preprocessing}. */
    public final Preprocessing preprocessing;
    /**
     * The classifier's position among the model's outputs: the interpreter's output tensor index
     * to read (0 in metadata written before models with several outputs were described).
     */
    public final int outputIndex;
    public final int classes;
    /** "probabilities" (softmax output) or "logits". */
    public final String scores;
    /** How to read the output: float32, or int8 to dequantize with its scale and zero point. */
    public final TensorQuantization outputQuantization;
    /** Class names in class-index order; empty when the model was exported without labels. */
    public final List<String> labels;

    private ModelMetadata(Map<String, Object> root) throws MetadataException {
        schemaVersion = integer(root, "schema_version");
        if (schemaVersion > SCHEMA_VERSION) {
            throw new MetadataException(
                    "This model's metadata has schema version " + schemaVersion
                            + "; this app reads up to " + SCHEMA_VERSION + ". Update the app.");
        }
        Map<String, Object> model = object(root, "model");
        name = string(model, "name");
        version = string(model, "version");
        description = string(model, "description");
        Map<String, Object> producer = object(root, "producer");
        producerVersion = string(producer, "version");
        target = string(producer, "target");

        Map<String, Object> input = object(root, "input");
        inputDtype = string(input, "dtype");
        inputQuantization = TensorQuantization.fromMetadata(input, "input");
        if (!"NHWC".equals(input.get("layout"))) {
            throw new MetadataException(
                    "Expected an NHWC image input, got shape " + input.get("shape")
                            + "; this app runs image classifiers only.");
        }
        height = integer(input, "height");
        width = integer(input, "width");
        channels = integer(input, "channels");

        Object pre = root.get("preprocessing");
        preprocessing = pre == null ? null : preprocessing(asObject(pre, "preprocessing"));
        if (preprocessing != null && preprocessing.channels() != channels) {
            throw new MetadataException(
                    "Metadata preprocessing gives " + preprocessing.channels()
                            + " channel(s) but the input has " + channels + "; re-export the model.");
        }

        Map<String, Object> output = object(root, "output");
        Object kind = output.get("kind");
        if (kind != null && !"classifier".equals(kind)) {
            Object outputName =
                    output.containsKey("name") ? output.get("name") : output.get("tensor");
            throw new MetadataException(
                    "Expected a classifier output, got the " + kind + " output '" + outputName
                            + "'; this app shows the classes of image classifiers only.");
        }
        outputIndex = output.containsKey("index") ? integer(output, "index") : 0;
        if (outputIndex < 0) {
            throw malformed("output.index", "a whole number of at least 0");
        }
        classes = integer(output, "classes");
        scores = string(output, "scores");
        outputQuantization = TensorQuantization.fromMetadata(output, "output");

        Object labelList = root.get("labels");
        List<String> names = new ArrayList<String>();
        if (labelList != null) {
            if (!(labelList instanceof List)) {
                throw malformed("labels", "a list");
            }
            for (Object label : (List<?>) labelList) {
                if (!(label instanceof String)) {
                    throw malformed("labels", "a list of strings");
                }
                names.add((String) label);
            }
            if (names.size() != classes) {
                throw new MetadataException(
                        "Metadata has " + names.size() + " labels for " + classes
                                + " classes; re-export the model with a matching --labels file.");
            }
        }
        labels = Collections.unmodifiableList(names);
    }

    /** Parses the JSON text of the {@code bnnconvert} metadata entry. */
    public static ModelMetadata parse(String json) throws MetadataException {
        Object root;
        try {
            root = Json.parse(json);
        } catch (IllegalArgumentException e) {
            throw new MetadataException(
                    "The model's bnnconvert metadata is not valid JSON (" + e.getMessage()
                            + "); re-export the model.",
                    e);
        }
        return new ModelMetadata(asObject(root, "metadata"));
    }

    /**
     * Reads the metadata of a {@code .tflite} file's bytes.
     *
     * @throws MetadataException when the model has no {@code bnnconvert} entry (exported without
     *     metadata, or by another tool) or the entry cannot be used.
     */
    public static ModelMetadata fromModel(ByteBuffer model) throws MetadataException {
        byte[] entry;
        try {
            entry = TfliteModelFile.metadata(model).get(ENTRY_NAME);
        } catch (IllegalArgumentException e) {
            throw new MetadataException("Not a TFLite model file: " + e.getMessage(), e);
        }
        if (entry == null) {
            throw new MetadataException(
                    "This model has no bnnconvert metadata. Export it with "
                            + "`bnnconvert export --labels labels.txt --preprocessing imagenet ...` "
                            + "(or another --preprocessing preset) and copy it again.");
        }
        return parse(new String(entry, StandardCharsets.UTF_8));
    }

    /** The label of class {@code index}, or "class N" when the model has no labels. */
    public String label(int index) {
        return index < labels.size() ? labels.get(index) : "class " + index;
    }

    private static Preprocessing preprocessing(Map<String, Object> p) throws MetadataException {
        String resample = string(p, "resample");
        if (!"triangle".equals(resample)) {
            throw new MetadataException(
                    "Metadata asks for resampling '" + resample + "', which this app does not know;"
                            + " update the app.");
        }
        String color = string(p, "color");
        if (!color.equals("rgb") && !color.equals("bgr") && !color.equals("gray")) {
            throw malformed("preprocessing.color", "rgb, bgr or gray");
        }
        String fit = string(p, "fit");
        if (!fit.equals("crop") && !fit.equals("stretch")) {
            throw malformed("preprocessing.fit", "crop or stretch");
        }
        double cropFraction = number(p, "crop_fraction");
        if (!(cropFraction > 0 && cropFraction <= 1)) {
            throw malformed("preprocessing.crop_fraction", "a number in (0, 1]");
        }
        double scale = number(p, "scale");
        if (!(scale > 0)) {
            throw malformed("preprocessing.scale", "a positive number");
        }
        double[] mean = numbers(p, "mean");
        double[] std = numbers(p, "std");
        int channels = color.equals("gray") ? 1 : 3;
        if (mean.length != channels || std.length != channels) {
            throw malformed("preprocessing.mean/std", channels + " values each");
        }
        for (double s : std) {
            if (s == 0) {
                throw malformed("preprocessing.std", "non-zero values");
            }
        }
        return new Preprocessing(color, fit, cropFraction, scale, mean, std);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asObject(Object value, String key) throws MetadataException {
        if (!(value instanceof Map)) {
            throw malformed(key, "an object");
        }
        return (Map<String, Object>) value;
    }

    private static Map<String, Object> object(Map<String, Object> m, String key)
            throws MetadataException {
        return asObject(m.get(key), key);
    }

    private static String string(Map<String, Object> m, String key) throws MetadataException {
        Object value = m.get(key);
        if (!(value instanceof String)) {
            throw malformed(key, "a string");
        }
        return (String) value;
    }

    private static double number(Map<String, Object> m, String key) throws MetadataException {
        Object value = m.get(key);
        if (!(value instanceof Double) || ((Double) value).isNaN()) {
            throw malformed(key, "a number");
        }
        return (Double) value;
    }

    private static int integer(Map<String, Object> m, String key) throws MetadataException {
        double value = number(m, key);
        if (value != Math.rint(value) || Math.abs(value) > Integer.MAX_VALUE) {
            throw malformed(key, "a whole number");
        }
        return (int) value;
    }

    private static double[] numbers(Map<String, Object> m, String key) throws MetadataException {
        Object value = m.get(key);
        if (!(value instanceof List)) {
            throw malformed(key, "a list of numbers");
        }
        List<?> list = (List<?>) value;
        double[] out = new double[list.size()];
        for (int i = 0; i < out.length; i++) {
            if (!(list.get(i) instanceof Double)) {
                throw malformed(key, "a list of numbers");
            }
            out[i] = (Double) list.get(i);
        }
        return out;
    }

    private static MetadataException malformed(String key, String expected) {
        return new MetadataException(
                "Expected '" + key + "' in the model's bnnconvert metadata to be " + expected
                        + "; re-export the model with a current bnnconvert.");
    }
}
