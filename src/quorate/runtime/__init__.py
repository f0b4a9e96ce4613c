"""The node runtime: joins the consensus core to storage, transport and the clock."""
