#!/bin/sh
echo "bench service on $(hostname)"
