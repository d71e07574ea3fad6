"""walvus: a vector database whose write-ahead log is Apache Kafka."""
