"""The Feast feature store on our stack: the environment Feast's YAML reads, the store
object built from it, the materialiser that keeps the online store fresh, and the
feature catalogue the backend's governed reads use."""
