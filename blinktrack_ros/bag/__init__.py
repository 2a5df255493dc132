"""Bags: rosbags-based reading and writing, offline replay of the node logic."""
