package org.bnnconvert.demo.core;

/** A model whose metadata is missing or cannot be used; the message says what to do. */
public final class MetadataException extends Exception {
    private static final long serialVersionUID = 1L;

    public MetadataException(String message) {
        super(message);
    }

    public MetadataException(String message, Throwable cause) {
        super(message, cause);
    }
}
